/**
 * CSV (RFC 4180) for the read-model exports: a header row of the SQLite column names, CRLF line
 * ends, fields quoted when they hold a comma, quote or line break. Text that a spreadsheet would run
 * as a formula (starting with = + - @ or their full-width forms, after any leading whitespace, or with a
 * tab or a carriage return) is prefixed with `'` (OWASP's
 * advice against CSV injection); numbers are written as they are.
 */
import { Readable } from 'node:stream';

const needsQuotes = /[",\r\n]/;
/**
 * A formula start: = + - @ (or their full-width forms ＝ ＋ － ＠, which spreadsheets also accept), after any
 * leading whitespace (spaces, tabs, no-break and ideographic spaces); or a tab or carriage return first.
 */
const formulaStart = /^(?:[\s\u00a0\u3000]*[=+\-@\uff1d\uff0b\uff0d\uff20]|[\t\r])/;

export function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number' || typeof value === 'bigint') return value.toString();
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  let text = typeof value === 'string' ? value : JSON.stringify(value);
  if (formulaStart.test(text)) text = `'${text}`;
  return needsQuotes.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function csvLine(values: readonly unknown[]): string {
  return `${values.map(csvField).join(',')}\r\n`;
}

/** A stream of CSV text: the header, then one line per row, pulled as the client reads (rows from either target). */
export function csvStream(columns: readonly string[], rows: AsyncIterable<Record<string, unknown>>, chunkRows = 500): Readable {
  async function* lines(): AsyncGenerator<string> {
    let chunk = csvLine(columns);
    let n = 0;
    for await (const row of rows) {
      chunk += csvLine(columns.map((c) => row[c]));
      if (++n % chunkRows === 0) {
        yield chunk;
        chunk = '';
      }
    }
    yield chunk;
  }
  return Readable.from(lines(), { objectMode: false });
}
