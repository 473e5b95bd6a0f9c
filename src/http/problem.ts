/** RFC 9457 problem details, the body of every error this service answers with. */
export type Problem = {
  type: string;
  title: string;
  status: number;
  detail?: string;
  [extension: string]: unknown;
};

export const problemContentType = 'application/problem+json; charset=utf-8';

export function problem(status: number, title: string, detail?: string, extra: Record<string, unknown> = {}): Problem {
  return {
    type: `https://fulfillment-ledger.dev/problems/${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`,
    title,
    status,
    ...(detail ? { detail } : {}),
    ...extra,
  };
}
