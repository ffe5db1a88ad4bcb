import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAN_ISOLATE_NETWORK, functionZips, runPackage, TEMPLATE, zipEntryNames } from './run-package.ts';
import { GITHUB_TOKEN_READERS, SECRETS_ACTIONS as SECRETS_ACTIONS_BY_FUNCTION, TAG_KEYS } from '../helpers/iam.ts';
import { expectBundleRotates } from '../helpers/bundle-smoke.ts';

/**
 * `npm run package` with no AWS credentials, then the CloudFormation template it wrote, resource by
 * resource: every function, trigger and IAM statement.
 */

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any -- a parsed CloudFormation template

interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: Json;
  Condition?: Record<string, Record<string, string | string[]>>;
  NotAction?: unknown;
  NotResource?: unknown;
}

const STAGE = 'ci';
const SERVICE = 'rekey';
/** Function name → logical id prefix serverless gives it. */
const FUNCTIONS = {
  'rotate-secret': 'RotateDashsecret',
  'scheduled-rotation': 'ScheduledDashrotation',
  ops: 'Ops',
  'leak-webhook': 'LeakDashwebhook',
  'leak-worker': 'LeakDashworker',
  'on-rekey-event': 'OnDashrekeyDashevent',
} as const;
type FunctionName = keyof typeof FUNCTIONS;
const NAMES = Object.keys(FUNCTIONS) as FunctionName[];

/** Functions that reach databases (and so may be placed in the VPC). */
const IN_VPC: FunctionName[] = ['rotate-secret', 'scheduled-rotation', 'ops', 'leak-worker'];
/** Invoked asynchronously (schedule, Secrets Manager): failures land in the on-failure queue. */
const ASYNC: FunctionName[] = ['rotate-secret', 'scheduled-rotation', 'on-rekey-event'];
/** The chat function reads no rekey secret and publishes no event (it would receive its own). */
const CHAT: FunctionName = 'on-rekey-event';

/** Exactly the Secrets Manager actions each function may use (shared with the AWS integration tests, which prove the code needs no other). */
const SECRETS_ACTIONS: Record<FunctionName, readonly string[]> = SECRETS_ACTIONS_BY_FUNCTION;
/** The IAM access-key actions each function may use (engine aws-iam-user), on users under the rekey path only. */
const IAM_ACTIONS: Record<FunctionName, string[]> = {
  'rotate-secret': ['CreateAccessKey', 'DeleteAccessKey', 'ListAccessKeys'],
  'scheduled-rotation': ['DeleteAccessKey', 'ListAccessKeys', 'UpdateAccessKey'],
  ops: ['CreateAccessKey', 'DeleteAccessKey', 'ListAccessKeys', 'UpdateAccessKey'],
  'leak-webhook': [],
  'leak-worker': ['CreateAccessKey', 'DeleteAccessKey', 'GetAccessKeyLastUsed', 'ListAccessKeys', 'UpdateAccessKey'],
  'on-rekey-event': [],
};
const SECRETS_WRITES = new Set(['PutSecretValue', 'UpdateSecretVersionStage', 'TagResource', 'UntagResource', 'RotateSecret'].map((a) => `secretsmanager:${a}`));
const SECRETS_READS = new Set(['GetSecretValue', 'DescribeSecret', 'ListSecretVersionIds'].map((a) => `secretsmanager:${a}`));
const MAX_ZIP_BYTES = 1_000_000;
/** The files deferred-modules.cjs writes next to a bundle, hash left out. */
const DEFERRED_FILES = ['libsodium-wrappers.cjs', 'mysql2-promise.cjs', 'octokit-rest.cjs', 'pg.cjs', 'proper-lockfile.cjs', 'write-file-atomic.cjs'];
/** Functions whose zip leaves them out (package.patterns): no database, no GitHub. */
const NO_DEFERRED: FunctionName[] = ['leak-webhook', 'on-rekey-event'];
/** Secrets read by ARN, holding credentials rekey does not rotate (no rekey tag). */
const CREDENTIAL_SECRETS = ['RekeyChatWebhooks', 'RekeyLeakWebhookCredentials', 'RekeyGitHubToken'];
/** The IAM user path the VPC package is given (`--param iamUserPath=…`), to prove the parameter applies. */
const CUSTOM_IAM_PATH = '/ci-managed/';

const INDEX_KEY = { 'Fn::Sub': '{{resolve:secretsmanager:${RekeyIndexKey}:SecretString}}' };
/** The four functions that build the core services (store, bus, fingerprints). */
const CORE_ENV = { REKEY_LOG_LEVEL: 'info', REKEY_STORE: 'aws', REKEY_EVENT_BUS_NAME: { Ref: 'RekeyEventBus' }, REKEY_INDEX_KEY: INDEX_KEY };
const GITHUB_TOKEN_ENV = { REKEY_GITHUB_TOKEN_SECRET_ID: { Ref: 'RekeyGitHubToken' } };
/**
 * Every function's environment, exactly: what its code reads and nothing more (a variable left over
 * from an older design misleads whoever reads the configuration). Never a credential: those are
 * read from their secrets at run time.
 */
const ENVIRONMENT: Record<FunctionName, Record<string, Json>> = {
  'rotate-secret': { ...CORE_ENV, ...GITHUB_TOKEN_ENV },
  'scheduled-rotation': { ...CORE_ENV, ...GITHUB_TOKEN_ENV },
  ops: { ...CORE_ENV, ...GITHUB_TOKEN_ENV },
  // No store, no bus: it verifies, fingerprints and enqueues.
  'leak-webhook': {
    REKEY_LOG_LEVEL: 'info',
    REKEY_INDEX_KEY: INDEX_KEY,
    REKEY_LEAK_QUEUE_URL: { Ref: 'LeakQueue' },
    REKEY_DELIVERIES_TABLE: { Ref: 'DeliveriesTable' },
    REKEY_LEAK_WEBHOOK_SECRET_ID: { Ref: 'RekeyLeakWebhookCredentials' },
  },
  // Its queue reaches it through the event source mapping: no queue URL, no deliveries table.
  'leak-worker': { ...CORE_ENV, ...GITHUB_TOKEN_ENV, REKEY_TICKETS_REPO: '' },
  // No store, no bus (it must never publish), no index key.
  'on-rekey-event': { REKEY_LOG_LEVEL: 'info', REKEY_CHAT_SECRET_ID: { Ref: 'RekeyChatWebhooks' }, REKEY_CHAT_SUCCESSES: 'summary' },
};

let template: Json;
let resources: Record<string, Json>;
let vpcTemplate: Json;
let vpcDir: string;
let packagedOffline = false;

const actionsOf = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const getAtt = (logicalId: string, attribute = 'Arn') => ({ 'Fn::GetAtt': [logicalId, attribute] });
const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const fn = (name: FunctionName) => resources[`${FUNCTIONS[name]}LambdaFunction`];
const roleIdOf = (name: FunctionName): string => fn(name).Properties.Role['Fn::GetAtt'][0];

function statementsOfRole(roleId: string): Statement[] {
  const role = resources[roleId];
  return (role.Properties.Policies ?? []).flatMap((p: Json) => p.PolicyDocument.Statement as Statement[]);
}
const statementsOf = (name: FunctionName) => statementsOfRole(roleIdOf(name));

/** Every IAM statement in the template: roles' inline policies and any standalone policy. */
function allStatements(): { where: string; statement: Statement }[] {
  const found: { where: string; statement: Statement }[] = [];
  for (const [id, r] of Object.entries(resources)) {
    if (r.Type === 'AWS::IAM::Role') for (const s of statementsOfRole(id)) found.push({ where: id, statement: s });
    if (r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy') {
      for (const s of r.Properties.PolicyDocument.Statement as Statement[]) found.push({ where: id, statement: s });
    }
  }
  return found;
}

beforeAll(async () => {
  // The same service with VPC parameters, packaged elsewhere — first, because packaging clears
  // .serverless even when writing to another directory.
  vpcDir = mkdtempSync(join(tmpdir(), 'rekey-package-vpc-'));
  await runPackage({ extraArgs: ['--param', 'subnetIds=subnet-aaa,subnet-bbb', '--param', 'securityGroupIds=sg-111', '--param', `iamUserPath=${CUSTOM_IAM_PATH}`, '--package', vpcDir] });
  vpcTemplate = JSON.parse(readFileSync(join(vpcDir, 'cloudformation-template-update-stack.json'), 'utf8'));
  packagedOffline = (await runPackage()).offline;
  template = JSON.parse(readFileSync(TEMPLATE, 'utf8'));
  resources = template.Resources;
}, 240_000);

afterAll(() => {
  if (vpcDir) rmSync(vpcDir, { recursive: true, force: true });
});

describe('npm run package', () => {
  it('refuses parameters that would deploy a stack that silently does not work, naming each', async () => {
    const badDir = mkdtempSync(join(tmpdir(), 'rekey-package-bad-'));
    try {
      const failed = runPackage({ extraArgs: ['--param', 'iamUserPath=rekey', '--param', 'ticketsRepo=acme', '--param', 'subnetIds=subnet-0a1b', '--package', badDir], timeoutMs: 60_000 });
      await expect(failed).rejects.toThrow(/--param iamUserPath: expected an IAM path that starts and ends with "\/"/);
      await failed.catch((error: Error) => {
        expect(error.message).toContain('--param ticketsRepo: expected empty or owner/name');
        expect(error.message).toContain('--param subnetIds and --param securityGroupIds go together');
      });
      expect(readdirSync(badDir).filter((name) => name.endsWith('.zip'))).toEqual([]);
    } finally {
      rmSync(badDir, { recursive: true, force: true });
    }
  }, 90_000);

  it('needs no network and no AWS credentials: on Linux it ran in a network namespace with no interface up', () => {
    // runPackage removed the credentials and, where the machine allows (unshare -rn), the network;
    // had packaging looked anything up, it would have failed in beforeAll.
    if (!CAN_ISOLATE_NETWORK) console.warn('this machine cannot run a command without network (unshare -rn): packaged with network');
    expect(packagedOffline).toBe(CAN_ISOLATE_NETWORK);
    if (process.platform === 'linux' && process.env.CI) expect(CAN_ISOLATE_NETWORK, 'CI must prove the package offline').toBe(true);
  });
});

describe('serverless package', () => {
  describe('functions', () => {
    it('defines exactly the rekey functions, each on nodejs22.x arm64 with its ESM handler', () => {
      const functions = ofType('AWS::Lambda::Function').map(([id]) => id).sort();
      expect(functions).toEqual(NAMES.map((n) => `${FUNCTIONS[n]}LambdaFunction`).sort());
      for (const name of NAMES) {
        const p = fn(name).Properties;
        expect(p.Runtime, name).toBe('nodejs22.x');
        expect(p.Architectures, name).toEqual(['arm64']);
        expect(p.Handler, name).toBe(`functions/${name}.handler`);
        expect(p.FunctionName, name).toBe(`${SERVICE}-${STAGE}-${name}`);
      }
    });

    it('gives every function its own role defined in the template, and no shared provider role', () => {
      const roles = NAMES.map(roleIdOf);
      expect(new Set(roles).size).toBe(NAMES.length);
      for (const id of roles) expect(resources[id]?.Type, id).toBe('AWS::IAM::Role');
      expect(resources.IamRoleLambdaExecution).toBeUndefined();
      expect(ofType('AWS::IAM::Role')).toHaveLength(NAMES.length);
    });

    it('gives each function exactly its environment: the store, the bus and the index key only to the four that build the core services', () => {
      expect(ofType('AWS::Events::EventBus').map(([id]) => id)).toEqual(['RekeyEventBus']);
      for (const name of NAMES) expect(fn(name).Properties.Environment.Variables, name).toEqual(ENVIRONMENT[name]);
      // Every variable is one the configuration schema (functions/runtime/config.ts) reads.
      const schema = readFileSync(join(import.meta.dirname, '../../functions/runtime/config.ts'), 'utf8');
      for (const variable of new Set(NAMES.flatMap((name) => Object.keys(ENVIRONMENT[name])))) expect(schema, variable).toMatch(new RegExp(`\\b${variable}: z\\.`));
      expect(resources.RekeyIndexKey.Type).toBe('AWS::SecretsManager::Secret');
      expect(resources.RekeyIndexKey.DeletionPolicy).toBe('Retain');
      // The index key secret carries no rekey tag, so no function role can read it.
      expect(resources.RekeyIndexKey.Properties.Tags).toBeUndefined();
    });
  });

  describe('IAM', () => {
    it('has no wildcard action, no Deny tricks and no NotAction/NotResource anywhere', () => {
      const all = allStatements();
      expect(all.length).toBeGreaterThan(NAMES.length * 2);
      for (const { where, statement } of all) {
        expect(statement.Effect, where).toBe('Allow');
        expect(statement.NotAction, where).toBeUndefined();
        expect(statement.NotResource, where).toBeUndefined();
        for (const action of actionsOf(statement)) {
          expect(action, `${where} ${statement.Sid}`).not.toContain('*');
          expect(action, where).toMatch(/^[a-z0-9-]+:[A-Za-z]+$/);
        }
      }
    });

    it('uses Resource "*" only for secretsmanager:ListSecrets, which has no resource-level permissions', () => {
      for (const { where, statement } of allStatements()) {
        const resourcesOf = Array.isArray(statement.Resource) ? statement.Resource : [statement.Resource];
        if (resourcesOf.includes('*')) expect(actionsOf(statement), where).toEqual(['secretsmanager:ListSecrets']);
      }
    });

    it('conditions every Secrets Manager write on aws:ResourceTag/rekey:managed = "true"', () => {
      let writes = 0;
      for (const { where, statement } of allStatements()) {
        if (!actionsOf(statement).some((a) => SECRETS_WRITES.has(a))) continue;
        writes++;
        expect(statement.Condition?.StringEquals?.['aws:ResourceTag/rekey:managed'], `${where} ${statement.Sid}`).toBe('true');
        // A write statement carries no read or list action under a looser condition.
        expect(actionsOf(statement).filter((a) => !SECRETS_WRITES.has(a)), where).toEqual([]);
      }
      expect(writes).toBeGreaterThanOrEqual(4);
    });

    it('limits tag writes to the keys rekey writes (fingerprints, last outcome, consumer push, purge, session watermark), so no function can un-manage a secret or mark one admin', () => {
      for (const { where, statement } of allStatements()) {
        if (!actionsOf(statement).some((a) => a === 'secretsmanager:TagResource' || a === 'secretsmanager:UntagResource')) continue;
        expect(statement.Condition?.['ForAllValues:StringLike']?.['aws:TagKeys'], where).toEqual([...TAG_KEYS]);
      }
    });

    it('grants IAM access-key actions only on users under the rekey path, each function only the ones it uses', () => {
      const expected = IAM_ACTIONS;
      for (const name of NAMES) {
        const iam = statementsOf(name).filter((s) => actionsOf(s).some((a) => a.startsWith('iam:')));
        expect([...new Set(iam.flatMap(actionsOf))].map((a) => a.slice('iam:'.length)).sort(), name).toEqual(expected[name]);
        for (const statement of iam) {
          expect(actionsOf(statement).every((a) => a.startsWith('iam:')), name).toBe(true);
          expect(statement.Resource, name).toEqual({ 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:user/rekey/*' });
        }
      }
    });

    it('conditions every Secrets Manager read on the managed tag or, for admin secrets, on rekey:admin = "true" (the credential secrets aside)', () => {
      for (const { where, statement } of allStatements()) {
        if (!actionsOf(statement).some((a) => SECRETS_READS.has(a))) continue;
        if (CREDENTIAL_SECRETS.some((id) => JSON.stringify(statement.Resource) === JSON.stringify({ Ref: id }))) continue; // checked on their own below
        const equals = statement.Condition?.StringEquals ?? {};
        const keys = Object.keys(equals);
        expect(keys, where).toHaveLength(1);
        expect([['aws:ResourceTag/rekey:managed', 'true'], ['aws:ResourceTag/rekey:admin', 'true']], where).toContainEqual([keys[0], equals[keys[0]!]]);
        expect(statement.Resource, where).toEqual({ 'Fn::Sub': 'arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*' });
      }
    });

    it('grants each function exactly the Secrets Manager actions it uses', () => {
      for (const name of NAMES) {
        const actions = new Set(statementsOf(name).flatMap(actionsOf).filter((a) => a.startsWith('secretsmanager:')));
        expect([...actions].map((a) => a.slice('secretsmanager:'.length)).sort(), name).toEqual(SECRETS_ACTIONS[name]);
      }
    });

    it('allows events:PutEvents on the rekey bus only', () => {
      const bus = ofType('AWS::Events::EventBus');
      expect(bus).toHaveLength(1);
      expect(bus[0]![1].Properties.Name).toBe(`rekey-${STAGE}`);
      const putEvents = allStatements().filter(({ statement }) => actionsOf(statement).includes('events:PutEvents'));
      // The four functions that build the core services; neither the webhook nor the chat function.
      expect(putEvents.map(({ where }) => where).sort()).toEqual((['rotate-secret', 'scheduled-rotation', 'ops', 'leak-worker'] as const).map(roleIdOf).sort());
      expect(statementsOf(CHAT).flatMap(actionsOf).filter((a) => a.startsWith('events:'))).toEqual([]);
      for (const { where, statement } of putEvents) {
        expect(statement.Resource, where).toEqual(getAtt(bus[0]![0]));
        expect(actionsOf(statement), where).toEqual(['events:PutEvents']);
      }
    });

    it('lets each function write logs to its own log group only', () => {
      for (const name of NAMES) {
        const logs = statementsOf(name).filter((s) => actionsOf(s).some((a) => a.startsWith('logs:')));
        expect(logs, name).toHaveLength(1);
        expect(actionsOf(logs[0]!).sort(), name).toEqual(['logs:CreateLogStream', 'logs:PutLogEvents']);
        expect(logs[0]!.Resource, name).toEqual({
          'Fn::Sub': `arn:\${AWS::Partition}:logs:\${AWS::Region}:\${AWS::AccountId}:log-group:/aws/lambda/${SERVICE}-${STAGE}-${name}:*`,
        });
      }
    });

    it('uses KMS only through Secrets Manager', () => {
      const kms = allStatements().filter(({ statement }) => actionsOf(statement).some((a) => a.startsWith('kms:')));
      expect(kms.length).toBeGreaterThan(0);
      for (const { where, statement } of kms) {
        expect(actionsOf(statement).sort(), where).toEqual(['kms:Decrypt', 'kms:GenerateDataKey']);
        expect(statement.Condition?.StringEquals?.['kms:ViaService'], where).toEqual({ 'Fn::Sub': 'secretsmanager.${AWS::Region}.amazonaws.com' });
      }
      expect(statementsOf('leak-webhook').flatMap(actionsOf).filter((a) => a.startsWith('kms:'))).toEqual([]);
    });

    it('lets on-rekey-event read the chat webhooks secret by ARN and nothing else of Secrets Manager; no other role may read it', () => {
      const chat = statementsOf(CHAT);
      expect(chat.map((s) => actionsOf(s).sort())).toEqual([['logs:CreateLogStream', 'logs:PutLogEvents'], ['secretsmanager:GetSecretValue'], ['sqs:SendMessage']]);
      const read = chat.find((s) => actionsOf(s).includes('secretsmanager:GetSecretValue'))!;
      expect(read.Resource).toEqual({ Ref: 'RekeyChatWebhooks' });
      expect(read.Condition).toBeUndefined();
      const readers = allStatements().filter(({ statement }) => JSON.stringify(statement.Resource) === JSON.stringify({ Ref: 'RekeyChatWebhooks' }));
      expect(readers.map(({ where }) => where)).toEqual([roleIdOf(CHAT)]);
      const secret = resources.RekeyChatWebhooks;
      expect(secret.Type).toBe('AWS::SecretsManager::Secret');
      expect(secret.DeletionPolicy).toBe('Retain');
      expect(secret.Properties.Name).toBe(`rekey/${STAGE}/chat-webhooks`);
      // No rekey tag: the rotation roles' tag-conditioned reads cannot reach it; no URL in the template.
      expect(secret.Properties.Tags).toBeUndefined();
      expect(JSON.parse(secret.Properties.SecretString)).toEqual({ slack: '', teams: '' });
      expect(fn(CHAT).Properties.Environment.Variables.REKEY_CHAT_SECRET_ID).toEqual({ Ref: 'RekeyChatWebhooks' });
      expect(JSON.stringify(template)).not.toMatch(/hooks\.slack\.com\/services\/T|webhook\.office\.com/);
    });

    it.each([
      ['RekeyLeakWebhookCredentials', ['leak-webhook'], 'leak-webhook-credentials', 'REKEY_LEAK_WEBHOOK_SECRET_ID', { githubWebhookSecret: '', gitguardianWebhookSecret: '', ingestToken: '' }],
      // The functions that push to GitHub Actions consumers, and the leak worker (alerts, tickets).
      ['RekeyGitHubToken', GITHUB_TOKEN_READERS, 'github-token', 'REKEY_GITHUB_TOKEN_SECRET_ID', { githubToken: '' }],
    ] as const)('creates %s empty and kept, readable by ARN by exactly %j, and named to each of them in its environment', (id, readersOf, name, variable, value) => {
      const readers: readonly FunctionName[] = readersOf;
      const secret = resources[id];
      expect(secret.Type).toBe('AWS::SecretsManager::Secret');
      expect(secret.DeletionPolicy).toBe('Retain');
      expect(secret.UpdateReplacePolicy).toBe('Retain');
      expect(secret.Properties.Name).toBe(`rekey/${STAGE}/${name}`);
      // No rekey tag (no tag-conditioned read reaches it), no generated or given value: empty fields.
      expect(secret.Properties.Tags).toBeUndefined();
      expect(secret.Properties.GenerateSecretString).toBeUndefined();
      expect(JSON.parse(secret.Properties.SecretString)).toEqual(value);
      const grants = allStatements().filter(({ statement }) => JSON.stringify(statement.Resource) === JSON.stringify({ Ref: id }));
      expect(grants.map(({ where, statement }) => [where, actionsOf(statement), statement.Condition]).sort()).toEqual(
        readers.map((reader) => [roleIdOf(reader), ['secretsmanager:GetSecretValue'], undefined]).sort(),
      );
      for (const name of NAMES) {
        const env = fn(name).Properties.Environment.Variables;
        if (readers.includes(name)) expect(env[variable], name).toEqual({ Ref: id });
        else expect(env[variable], name).toBeUndefined();
      }
    });

    it('puts no credential of the leak path in any environment: they are read from their secrets at run time', () => {
      for (const name of NAMES) {
        const env = fn(name).Properties.Environment.Variables;
        for (const variable of ['GITHUB_WEBHOOK_SECRET', 'GITGUARDIAN_WEBHOOK_SECRET', 'REKEY_INGEST_TOKEN', 'GITHUB_TOKEN', 'SLACK_WEBHOOK_URL', 'TEAMS_WEBHOOK_URL']) {
          expect(env[variable], `${name} ${variable}`).toBeUndefined();
        }
      }
      // The webhook may not read the GitHub token: only its own secret, by ARN.
      const webhookReads = statementsOf('leak-webhook').filter((s) => actionsOf(s).some((a) => a.startsWith('secretsmanager:')));
      expect(webhookReads.map((s) => s.Resource)).toEqual([{ Ref: 'RekeyLeakWebhookCredentials' }]);
    });

    it('lets the webhook claim and release delivery ids in the deliveries table, and nothing else of DynamoDB anywhere', () => {
      const dynamo = allStatements().filter(({ statement }) => actionsOf(statement).some((a) => a.startsWith('dynamodb:')));
      expect(dynamo.map(({ where, statement }) => [where, actionsOf(statement).sort(), statement.Resource])).toEqual([
        [roleIdOf('leak-webhook'), ['dynamodb:DeleteItem', 'dynamodb:PutItem'], getAtt('DeliveriesTable')],
      ]);
    });

    it('lets RotateSecret callers invoke the rekey rotation function only', () => {
      for (const { where, statement } of allStatements()) {
        if (!actionsOf(statement).includes('lambda:InvokeFunction')) continue;
        expect(statement.Resource, where).toEqual({
          'Fn::Sub': `arn:\${AWS::Partition}:lambda:\${AWS::Region}:\${AWS::AccountId}:function:${SERVICE}-${STAGE}-rotate-secret`,
        });
      }
    });

    it('lets only the sweep call RotateSecret and invoke the rotation function (ops and the leak worker run the steps in-process)', () => {
      const granting = (action: string) => NAMES.filter((name) => statementsOf(name).some((s) => actionsOf(s).includes(action)));
      expect(granting('secretsmanager:RotateSecret')).toEqual(['scheduled-rotation']);
      expect(granting('lambda:InvokeFunction')).toEqual(['scheduled-rotation']);
    });

    it('scopes the IAM access-key statements to the iamUserPath parameter', () => {
      const statements = Object.entries(vpcTemplate.Resources as Record<string, Json>)
        .filter(([, r]) => r.Type === 'AWS::IAM::Role')
        .flatMap(([, r]) => (r.Properties.Policies ?? []).flatMap((p: Json) => p.PolicyDocument.Statement as Statement[]))
        .filter((s) => actionsOf(s).some((a) => a.startsWith('iam:')));
      expect(statements.length).toBeGreaterThanOrEqual(4);
      for (const statement of statements) expect(statement.Resource).toEqual({ 'Fn::Sub': `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:user${CUSTOM_IAM_PATH}*` });
    });

    it('attaches the VPC execution policy only under the HasVpc condition and only to functions that may be in the VPC', () => {
      for (const name of NAMES) {
        const managed = resources[roleIdOf(name)].Properties.ManagedPolicyArns;
        if (!IN_VPC.includes(name)) {
          expect(managed, name).toBeUndefined();
          continue;
        }
        expect(managed, name).toEqual({
          'Fn::If': ['HasVpc', [{ 'Fn::Sub': 'arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole' }], { Ref: 'AWS::NoValue' }],
        });
      }
    });
  });

  describe('triggers and plumbing', () => {
    it('runs scheduled-rotation on an EventBridge schedule on the default bus, rate(1 hour) by default', () => {
      const rules = ofType('AWS::Events::Rule').filter(([, r]) => r.Properties.ScheduleExpression);
      expect(rules).toHaveLength(1);
      const [id, rule] = rules[0]!;
      expect(rule.Properties.ScheduleExpression).toBe('rate(1 hour)');
      expect(rule.Properties.EventBusName).toBeUndefined();
      expect(rule.Properties.State).toBe('ENABLED');
      expect(rule.Properties.Targets.map((t: Json) => t.Arn)).toEqual([getAtt('ScheduledDashrotationLambdaFunction')]);
      const permission = ofType('AWS::Lambda::Permission').find(([, p]) => p.Properties.Principal === 'events.amazonaws.com' && JSON.stringify(p.Properties.SourceArn) === JSON.stringify(getAtt(id)));
      expect(JSON.stringify(permission?.[1].Properties.FunctionName)).toContain('ScheduledDashrotationLambdaFunction');
    });

    it('sends every event on the rekey bus, and only those, to on-rekey-event', () => {
      const rules = ofType('AWS::Events::Rule').filter(([, r]) => r.Properties.EventPattern);
      expect(rules).toHaveLength(1);
      const [id, rule] = rules[0]!;
      expect(rule.Properties.EventBusName).toEqual({ Ref: 'RekeyEventBus' });
      expect(rule.Properties.EventPattern).toEqual({ source: ['rekey'] });
      expect(rule.Properties.State).toBe('ENABLED');
      expect(rule.Properties.Targets.map((t: Json) => t.Arn)).toEqual([getAtt('OnDashrekeyDasheventLambdaFunction')]);
      const permissions = ofType('AWS::Lambda::Permission').filter(([, p]) => JSON.stringify(p.Properties.SourceArn) === JSON.stringify(getAtt(id)));
      expect(permissions).toHaveLength(1);
      expect(permissions[0]![1].Properties).toMatchObject({ Action: 'lambda:InvokeFunction', Principal: 'events.amazonaws.com', FunctionName: getAtt('OnDashrekeyDasheventLambdaFunction') });
      // Outside the VPC: it only talks to Slack and Teams.
      expect(fn(CHAT).Properties.VpcConfig).toBeUndefined();
    });

    it('routes POST /webhooks/{scanner} on the HTTP API to leak-webhook with payload 2.0', () => {
      const routes = ofType('AWS::ApiGatewayV2::Route');
      expect(routes.map(([, r]) => r.Properties.RouteKey)).toEqual(['POST /webhooks/{scanner}']);
      const integrationId = routes[0]![1].Properties.Target['Fn::Join'][1][1].Ref;
      const integration = resources[integrationId].Properties;
      expect(integration.IntegrationUri).toEqual(getAtt('LeakDashwebhookLambdaFunction'));
      expect(integration.PayloadFormatVersion).toBe('2.0');
    });

    it('archives the rekey bus (the audit trail) for 90 days by default', () => {
      const archives = ofType('AWS::Events::Archive');
      expect(archives).toHaveLength(1);
      expect(archives[0]![1].Properties.SourceArn).toEqual(getAtt('RekeyEventBus'));
      expect(archives[0]![1].Properties.RetentionDays).toBe(90);
      expect(archives[0]![1].Properties.EventPattern).toBeUndefined();
    });

    it('defines LeakQueue with a dead-letter queue; only the webhook sends to it, only the worker consumes it', () => {
      const queue = resources.LeakQueue;
      expect(queue.Type).toBe('AWS::SQS::Queue');
      expect(queue.Properties.RedrivePolicy.deadLetterTargetArn).toEqual(getAtt('LeakDeadLetterQueue'));
      expect(resources.LeakDeadLetterQueue.Type).toBe('AWS::SQS::Queue');
      expect(queue.Properties.VisibilityTimeout).toBeGreaterThanOrEqual(6 * fn('leak-worker').Properties.Timeout);
      const touching = allStatements().filter(({ statement }) => JSON.stringify(statement.Resource) === JSON.stringify(getAtt('LeakQueue')));
      expect(touching.map(({ where, statement }) => [where, actionsOf(statement).sort()])).toEqual([
        [roleIdOf('leak-webhook'), ['sqs:SendMessage']],
        [roleIdOf('leak-worker'), ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:ReceiveMessage']],
      ]);
      expect(fn('leak-webhook').Properties.Environment.Variables.REKEY_LEAK_QUEUE_URL).toEqual({ Ref: 'LeakQueue' });
      const mapping = ofType('AWS::Lambda::EventSourceMapping');
      expect(mapping).toHaveLength(1);
      expect(mapping[0]![1].Properties.EventSourceArn).toEqual(getAtt('LeakQueue'));
      expect(mapping[0]![1].Properties.FunctionName).toEqual(getAtt('LeakDashworkerLambdaFunction'));
      expect(mapping[0]![1].Properties.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
      // test/integration/leak-burst.test.ts hands the worker batches of this size.
      expect(mapping[0]![1].Properties.BatchSize).toBe(10);
    });

    it('sends failed async invocations of the scheduled and rotation functions to the on-failure queue', () => {
      const configs = ofType('AWS::Lambda::EventInvokeConfig');
      expect(configs.map(([, c]) => c.Properties.FunctionName.Ref).sort()).toEqual(ASYNC.map((n) => `${FUNCTIONS[n]}LambdaFunction`).sort());
      for (const [, c] of configs) expect(c.Properties.DestinationConfig.OnFailure.Destination).toEqual(getAtt('AsyncFailureQueue'));
      expect(resources.AsyncFailureQueue.Type).toBe('AWS::SQS::Queue');
      // The destination is written with the function's own role.
      for (const name of NAMES) {
        const sends = statementsOf(name).filter((s) => JSON.stringify(s.Resource) === JSON.stringify(getAtt('AsyncFailureQueue')));
        expect(sends.map((s) => actionsOf(s)), name).toEqual(ASYNC.includes(name) ? [['sqs:SendMessage']] : []);
      }
    });

    it('lets Secrets Manager, from this account only, invoke rotate-secret', () => {
      const permissions = ofType('AWS::Lambda::Permission').filter(([, p]) => p.Properties.Principal === 'secretsmanager.amazonaws.com');
      expect(permissions).toHaveLength(1);
      const p = permissions[0]![1].Properties;
      expect(p.Action).toBe('lambda:InvokeFunction');
      expect(p.FunctionName).toEqual(getAtt('RotateDashsecretLambdaFunction'));
      expect(p.SourceAccount).toEqual({ Ref: 'AWS::AccountId' });
    });
  });

  describe('completeness', () => {
    /** Every action of every role, Secrets Manager's from the shared list: a statement added anywhere must be listed here. */
    const OTHER_ACTIONS: Record<FunctionName, string[]> = {
      'rotate-secret': ['events:PutEvents', 'kms:Decrypt', 'kms:GenerateDataKey', 'logs:CreateLogStream', 'logs:PutLogEvents', 'sqs:SendMessage'],
      'scheduled-rotation': ['events:PutEvents', 'kms:Decrypt', 'kms:GenerateDataKey', 'lambda:InvokeFunction', 'logs:CreateLogStream', 'logs:PutLogEvents', 'sqs:SendMessage'],
      ops: ['events:PutEvents', 'kms:Decrypt', 'kms:GenerateDataKey', 'logs:CreateLogStream', 'logs:PutLogEvents'],
      // No events:PutEvents: it publishes nothing (the worker emits the leak's events).
      'leak-webhook': ['dynamodb:DeleteItem', 'dynamodb:PutItem', 'logs:CreateLogStream', 'logs:PutLogEvents', 'sqs:SendMessage'],
      'leak-worker': [
        'events:PutEvents',
        'kms:Decrypt',
        'kms:GenerateDataKey',
        'logs:CreateLogStream',
        'logs:PutLogEvents',
        'sqs:ChangeMessageVisibility',
        'sqs:DeleteMessage',
        'sqs:GetQueueAttributes',
        'sqs:ReceiveMessage',
      ],
      'on-rekey-event': ['logs:CreateLogStream', 'logs:PutLogEvents', 'sqs:SendMessage'],
    };
    const nameOfLogicalId = (id: string): FunctionName => {
      const name = NAMES.find((n) => `${FUNCTIONS[n]}LambdaFunction` === id);
      if (!name) throw new Error(`${id} is not a rekey function`);
      return name;
    };
    /** The function a Ref/GetAtt (or a Join around one) points at. */
    const functionOf = (value: Json): FunctionName => nameOfLogicalId(value?.Ref ?? value?.['Fn::GetAtt']?.[0]);

    it('grants each role exactly its listed actions, in inline policies only', () => {
      for (const name of NAMES) {
        const granted = [...new Set(statementsOf(name).flatMap(actionsOf))].sort();
        const expected = [...SECRETS_ACTIONS[name].map((a) => `secretsmanager:${a}`), ...IAM_ACTIONS[name].map((a) => `iam:${a}`), ...OTHER_ACTIONS[name]].sort();
        expect(granted, name).toEqual(expected);
        // Nothing attached beside the inline policy, except AWS's VPC execution policy (checked above).
        const managed = JSON.stringify(resources[roleIdOf(name)].Properties.ManagedPolicyArns ?? null);
        expect(managed === 'null' || managed.includes('AWSLambdaVPCAccessExecutionRole'), name).toBe(true);
      }
      expect(ofType('AWS::IAM::Policy')).toEqual([]);
      expect(ofType('AWS::IAM::ManagedPolicy')).toEqual([]);
      // Each role can be assumed by Lambda only.
      for (const [id, role] of ofType('AWS::IAM::Role')) {
        expect(role.Properties.AssumeRolePolicyDocument.Statement, id).toEqual([
          { Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' }, Action: 'sts:AssumeRole' },
        ]);
      }
    });

    it('wires every trigger to its function, and nothing else may invoke any function', () => {
      const permissions = ofType('AWS::Lambda::Permission').map(([, p]) => [functionOf(p.Properties.FunctionName), p.Properties.Principal, p.Properties.Action]);
      expect(permissions.sort()).toEqual(
        [
          ['leak-webhook', 'apigateway.amazonaws.com', 'lambda:InvokeFunction'],
          ['on-rekey-event', 'events.amazonaws.com', 'lambda:InvokeFunction'],
          ['rotate-secret', 'secretsmanager.amazonaws.com', 'lambda:InvokeFunction'],
          ['scheduled-rotation', 'events.amazonaws.com', 'lambda:InvokeFunction'],
        ].sort(),
      );
      // Every permission is scoped to its source: a rule, the HTTP API, or this account.
      for (const [id, p] of ofType('AWS::Lambda::Permission')) expect(p.Properties.SourceArn ?? p.Properties.SourceAccount, id).toBeDefined();
      const ruleTargets = ofType('AWS::Events::Rule').flatMap(([, r]) => r.Properties.Targets.map((t: Json) => functionOf(t.Arn)));
      expect(ruleTargets.sort()).toEqual(['on-rekey-event', 'scheduled-rotation']);
      expect(ofType('AWS::Lambda::EventSourceMapping').map(([, m]) => functionOf(m.Properties.FunctionName))).toEqual(['leak-worker']);
      expect(ofType('AWS::ApiGatewayV2::Integration').map(([, i]) => functionOf(i.Properties.IntegrationUri))).toEqual(['leak-webhook']);
      // ops has no trigger: on-call invokes it with their own lambda:InvokeFunction permission.
      expect(permissions.filter(([name]) => name === 'ops')).toEqual([]);
      expect(ofType('AWS::Lambda::Url')).toEqual([]);
    });

    it('retries a failed schedule tick once before the on-failure queue', () => {
      const config = ofType('AWS::Lambda::EventInvokeConfig').find(([, c]) => c.Properties.FunctionName.Ref === 'ScheduledDashrotationLambdaFunction');
      expect(config?.[1].Properties.MaximumRetryAttempts).toBe(1);
    });

    it('looks nothing up in AWS at package time: no ${aws:…}, ${ssm:…}, ${cf:…}, ${s3:…} or ${secretsmanager:…} in serverless.yml', () => {
      // Comments aside (the file's header names what it avoids).
      const yaml = readFileSync(join(import.meta.dirname, '../../serverless.yml'), 'utf8')
        .split('\n')
        .filter((line) => !line.trim().startsWith('#'))
        .join('\n');
      expect(yaml.match(/\$\{(?:aws|ssm|cf|s3|secretsmanager)(?:\([^)]*\))?:[^}]*\}/g) ?? []).toEqual([]);
    });
  });

  describe('VPC parameters', () => {
    it('places no function in a VPC by default', () => {
      expect(template.Conditions.HasVpc).toEqual({
        'Fn::And': [{ 'Fn::Not': [{ 'Fn::Equals': ['', ''] }] }, { 'Fn::Not': [{ 'Fn::Equals': ['', ''] }] }],
      });
      expect(fn('leak-webhook').Properties.VpcConfig).toBeUndefined();
    });

    it('places the database-facing functions in the given subnets and security groups', () => {
      const r = vpcTemplate.Resources;
      expect(vpcTemplate.Conditions.HasVpc).toEqual({
        'Fn::And': [{ 'Fn::Not': [{ 'Fn::Equals': ['subnet-aaa,subnet-bbb', ''] }] }, { 'Fn::Not': [{ 'Fn::Equals': ['sg-111', ''] }] }],
      });
      for (const name of NAMES) {
        const vpc = r[`${FUNCTIONS[name]}LambdaFunction`].Properties.VpcConfig;
        if (!IN_VPC.includes(name)) {
          expect(vpc, name).toBeUndefined();
          continue;
        }
        expect(vpc, name).toEqual({
          'Fn::If': [
            'HasVpc',
            { SubnetIds: { 'Fn::Split': [',', 'subnet-aaa,subnet-bbb'] }, SecurityGroupIds: { 'Fn::Split': [',', 'sg-111'] } },
            { Ref: 'AWS::NoValue' },
          ],
        });
      }
    });
  });

  describe('bundles', () => {
    it('writes one zip per function, each at most 1 MB, holding one ESM bundle and, where used, the deferred modules', () => {
      const zips = functionZips();
      expect([...zips.keys()].sort()).toEqual([...NAMES].sort());
      for (const [name, zip] of zips) {
        expect(zip.bytes, name).toBeGreaterThan(1_000);
        expect(zip.bytes, name).toBeLessThanOrEqual(MAX_ZIP_BYTES);
        const names = zipEntryNames(readFileSync(zip.path));
        // The drivers, Octokit, libsodium and the local store's file helpers, each in its own file loaded on first use
        // (functions/runtime/bundle/deferred-modules.cjs); not in the two functions that never need them.
        const deferred = NO_DEFERRED.includes(name as FunctionName) ? [] : DEFERRED_FILES.map((file) => `functions/deferred/${file}`);
        expect(names.map((entry) => entry.replace(/-[A-Z0-9]{8}\.cjs$/, '.cjs')).sort(), name).toEqual([`functions/${name}.mjs`, ...deferred].sort());
      }
    });

    it('runs: the ops bundle rotates a real PostgreSQL password on Secrets Manager and a MariaDB one on the local store', async () => {
      await expectBundleRotates('postgres', 'aws');
      await expectBundleRotates('mysql', 'local');
    }, 90_000);
  });
});
