/**
 * The type a request may be written with in an app, as opposed to what the schema parses it to.
 *
 * The zod input types are exact (string-literal unions, mutable arrays), which rejects two
 * ordinary ways of writing a request: a model declared `as const` (readonly arrays) and a
 * request imported from a `.json` file (TypeScript widens its literals to `string` and
 * `number`). Every entry point validates the request at run time with the same schema, so the
 * compile-time type can afford to accept both: arrays may be readonly, a literal union also
 * takes any string or number, and editors still complete the literals
 * (`"mse" | (string & {})` keeps the suggestions).
 *
 * @example
 * ```ts
 * import request from "./request.json" with { type: "json" };
 * const model = { layers: [{ type: "linear", in_features: 2, out_features: 1 }] } as const;
 * const body: AsWritten<FineTuneRequestInput> = { ...request, model };
 * ```
 */
export type AsWritten<T> = T extends string
  ? T | (string & {})
  : T extends number
    ? T | (number & {})
    : T extends boolean
      ? boolean
      : T extends bigint | null | undefined
        ? T
        : T extends Uint8Array | ArrayBuffer | Blob | Date
        ? T
        : T extends readonly (infer E)[]
          ? readonly AsWritten<E>[]
          : T extends object
            ? { [K in keyof T]: AsWritten<T[K]> }
            : T;
