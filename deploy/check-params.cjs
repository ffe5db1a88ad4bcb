'use strict';
/**
 * A local Serverless plugin: refuses, at package time, parameters that would deploy a stack that
 * looks fine and silently does not work — an IAM path that matches no user (the access-key
 * statements would grant nothing), a tickets repository that is not owner/name, a VPC with
 * subnets but no security group. Reads the resolved values from `custom.checkedParams`.
 */
const RULES = {
  // IAM's own path syntax: starts and ends with `/` (`/` alone = every user).
  iamUserPath: [/^\/(?:[\x21-\x7e]+\/)?$/, 'an IAM path that starts and ends with "/" (e.g. /rekey/, or / for every user)'],
  ticketsRepo: [/^(?:[\w.-]+\/[\w.-]+)?$/, 'empty or owner/name'],
  chatSuccesses: [/^(?:summary|each)$/, 'summary or each'],
  scheduleExpression: [/^(?:rate|cron)\(.+\)$/, 'an EventBridge rate(...) or cron(...) expression'],
  subnetIds: [/^(?:subnet-[0-9a-f]+(?:,subnet-[0-9a-f]+)*)?$/, 'empty or comma-separated subnet ids'],
  securityGroupIds: [/^(?:sg-[0-9a-f]+(?:,sg-[0-9a-f]+)*)?$/, 'empty or comma-separated security group ids'],
};

class CheckParams {
  constructor(serverless) {
    this.hooks = {
      'before:package:cleanup': () => {
        const params = serverless.service.custom?.checkedParams ?? {};
        const problems = [];
        for (const [name, [pattern, expected]] of Object.entries(RULES)) {
          const value = String(params[name] ?? '');
          if (!pattern.test(value)) problems.push(`--param ${name}: expected ${expected}`);
        }
        if (Boolean(params.subnetIds) !== Boolean(params.securityGroupIds)) {
          problems.push('--param subnetIds and --param securityGroupIds go together: give both for a VPC, or neither');
        }
        if (problems.length) throw new serverless.classes.Error(`rekey: invalid parameters:\n  ${problems.join('\n  ')}`);
      },
    };
  }
}

module.exports = CheckParams;
