import { describe, expect, it } from 'vitest';
import { ValidationError } from '#core/errors.ts';
import { parseJsonPath, readJsonPath } from '#core/json-path.ts';

describe('json-path', () => {
  describe('parseJsonPath', () => {
    it('reads dotted names, indexes and quoted keys, with or without the leading $', () => {
      expect(parseJsonPath('$')).toEqual([]);
      expect(parseJsonPath('$.data.attributes.secret')).toEqual(['data', 'attributes', 'secret']);
      expect(parseJsonPath('items[2].id')).toEqual(['items', 2, 'id']);
      expect(parseJsonPath(`$['odd key']["x.y"]`)).toEqual(['odd key', 'x.y']);
      expect(parseJsonPath(`$['it\\'s']`)).toEqual([`it's`]);
      expect(parseJsonPath('$.api-key')).toEqual(['api-key']);
    });

    it('refuses filters, wildcards, scripts and malformed paths with a ValidationError', () => {
      for (const bad of ['', '$..key', '$.*', '$[?(@.x)]', '$.a[', '.a', '$.a.', '$[-1]', '1abc', 'x'.repeat(300), '$' + '.a'.repeat(40)]) {
        expect(() => parseJsonPath(bad), bad).toThrow(ValidationError);
      }
    });
  });

  describe('readJsonPath', () => {
    const doc = JSON.parse('{"data":{"id":"key_1","list":[{"v":1},{"v":"two"}]},"__proto__":{"polluted":"yes"}}') as unknown;

    it('returns the value at the path, or undefined when any step is missing', () => {
      expect(readJsonPath(doc, '$.data.id')).toBe('key_1');
      expect(readJsonPath(doc, '$.data.list[1].v')).toBe('two');
      expect(readJsonPath(doc, '$.data.list[5].v')).toBeUndefined();
      expect(readJsonPath(doc, '$.data.id.more')).toBeUndefined();
      expect(readJsonPath(doc, '$.data.list.v')).toBeUndefined();
      expect(readJsonPath(doc, '$')).toBe(doc);
    });

    it('sees own properties only: a path never reaches a prototype, and a "__proto__" key is just a key', () => {
      expect(readJsonPath({}, '$.constructor.name')).toBeUndefined();
      expect(readJsonPath({ a: 'x' }, '$.a.length')).toBeUndefined();
      expect(readJsonPath([1, 2], '$.length')).toBeUndefined();
      expect(readJsonPath(doc, `$['__proto__'].polluted`)).toBe('yes');
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    });
  });
});
