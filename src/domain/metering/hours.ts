/**
 * Microsoft's metering clock, pure: usage is billed per clock hour (minute 0 to 59, UTC), an event for an hour
 * must reach Microsoft within 24 hours of the usage it reports, and the ISV's included quantities run per UTC month.
 */

export const HOUR_MS = 3_600_000;
/** Microsoft's limit: `effectiveStartTime` between now and 24 hours back (docs/marketplace.md §11). */
export const MICROSOFT_WINDOW_MS = 24 * HOUR_MS;

/** The clock hour of a time as `YYYY-MM-DDTHH` (UTC); undefined when it is not a time. */
export function hourOf(time: string): string | undefined {
  const ms = Date.parse(time);
  if (Number.isNaN(ms)) return undefined;
  return new Date(ms).toISOString().slice(0, 13);
}

/** Start of an hour key, in ms. */
export function hourStartMs(hour: string): number {
  return Date.parse(`${hour}:00:00.000Z`);
}

/** End of an hour key (the start of the next hour), in ms. */
export function hourEndMs(hour: string): number {
  return hourStartMs(hour) + HOUR_MS;
}

/** The UTC month (`YYYY-MM`) of an hour key. */
export function monthOf(hour: string): string {
  return hour.slice(0, 7);
}

/** When Microsoft stops accepting an event whose `effectiveStartTime` is `effectiveStartTime`. */
export function expiresAtMs(effectiveStartTime: string): number {
  return Date.parse(effectiveStartTime) + MICROSOFT_WINDOW_MS;
}

/** Sums without binary-fraction noise (0.1 + 0.2): quantities are kept to 6 decimals. */
export function addQuantity(a: number, b: number): number {
  return Math.round((a + b) * 1e6) / 1e6;
}
