const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');

/**
 * A secret value in transit. Every printable form is `[sealed]`; `reveal()` is the only way out,
 * so each place that touches plaintext can be found with `grep -rn reveal\(`.
 */
export class Sealed<T = string> {
  readonly #value: T;

  constructor(value: T) {
    this.#value = value;
  }

  reveal(): T {
    return this.#value;
  }

  map<U>(fn: (value: T) => U): Sealed<U> {
    return new Sealed(fn(this.#value));
  }

  toString(): string {
    return '[sealed]';
  }

  toJSON(): string {
    return '[sealed]';
  }

  [inspectSymbol](): string {
    return '[sealed]';
  }
}

export const seal = <T>(value: T): Sealed<T> => new Sealed(value);
