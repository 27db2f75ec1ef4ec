/**
 * The error classes' common base, as Optuna's `OptunaError`. Every error peertune throws on purpose
 * derives from `PeertuneError`, so a caller (the CLI, a worker loop, a user's `catch`) can tell "peertune
 * refused this, with a message written for you" from a bug or an error of the objective, by class and not
 * by a list of names.
 *
 * Option mistakes (a bad value given to a sampler, a pruner, a storage or `optimize`) all throw one class,
 * `OptionError`, built by one helper, `checkOptions()`, so their messages read alike: who was given the
 * option, the option's name, the value, and what would be valid.
 */

export class PeertuneError extends Error {
  override name = 'PeertuneError';
  /**
   * True when the message is written for users and says what to change: the CLI prints it as one line
   * without a stack trace. A subclass whose errors mean "peertune has a bug" sets it to false.
   */
  readonly userFacing: boolean = true;
}

/** A bad option value: names the option, the value given and what is valid. */
export class OptionError extends PeertuneError {
  override name = 'OptionError';
  constructor(
    message: string,
    /** The option's name, e.g. `nStartupTrials`. */
    readonly option: string,
    readonly value: unknown,
  ) {
    super(message);
  }
}

/** A call the study cannot honour as made (tell twice, bestTrial before any trial completes...). */
export class StudyUsageError extends PeertuneError {
  override name = 'StudyUsageError';
}

/** One option's rule: what is valid, said in words for the message, and the test itself. */
export interface OptionRule {
  /** How the message describes a valid value, e.g. "an integer >= 0". */
  readonly valid: string;
  readonly test: (value: unknown) => boolean;
  /** `undefined` is accepted (the option is left out); default true. */
  readonly optional?: boolean;
}

/** How an option value is shown in a message: JSON where it can be, else its type. */
export function describeValue(v: unknown): string {
  if (typeof v === 'number') return String(v); // NaN, Infinity, -0 stay readable
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'symbol') return v.toString();
  if (v === undefined) return 'undefined';
  try {
    const s = JSON.stringify(v);
    if (s === undefined) return typeof v;
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return typeof v;
  }
}

/**
 * Checks each named option of `opts` against its rule and throws an OptionError for the first that
 * breaks it: `<owner>: <option> must be <valid>, got <value>`. With `known`, keys not in `rules` are
 * refused too (a misspelt option otherwise passes silently in JavaScript).
 */
export function checkOptions(
  owner: string,
  options: unknown,
  rules: Readonly<Record<string, OptionRule>>,
  settings: { rejectUnknown?: boolean } = {},
): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new OptionError(`${owner}: options must be an object, got ${describeValue(options)}`, 'options', options);
  }
  const opts = options as Readonly<Record<string, unknown>>;
  if (settings.rejectUnknown) {
    const known = Object.keys(rules);
    for (const key of Object.keys(opts)) {
      if (!known.includes(key)) throw new OptionError(`${owner}: unknown option "${key}"; valid options are ${known.join(', ')}`, key, opts[key]);
    }
  }
  for (const [option, rule] of Object.entries(rules)) {
    const value = opts[option];
    if (value === undefined && rule.optional !== false) continue;
    if (!rule.test(value)) throw new OptionError(`${owner}: ${option} must be ${rule.valid}, got ${describeValue(value)}`, option, value);
  }
}

/** Rules used across the project. */
export const rules = {
  integer(min: number, max = Infinity): OptionRule {
    return {
      valid: max === Infinity ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`,
      test: (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max,
    };
  },
  finite(min = -Infinity, max = Infinity): OptionRule {
    let valid = 'a finite number';
    if (min > -Infinity && max < Infinity) valid = `a number in [${min}, ${max}]`;
    else if (min > -Infinity) valid = `a finite number >= ${min}`;
    else if (max < Infinity) valid = `a finite number <= ${max}`;
    return { valid, test: (v) => typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max };
  },
  positive(): OptionRule {
    return { valid: 'a positive number', test: (v) => typeof v === 'number' && Number.isFinite(v) && v > 0 };
  },
  boolean(): OptionRule {
    return { valid: 'true or false', test: (v) => typeof v === 'boolean' };
  },
  oneOf(choices: readonly unknown[]): OptionRule {
    return { valid: `one of ${choices.map((c) => describeValue(c)).join(', ')}`, test: (v) => choices.includes(v) };
  },
  required(rule: OptionRule): OptionRule {
    return { ...rule, optional: false };
  },
} as const;
