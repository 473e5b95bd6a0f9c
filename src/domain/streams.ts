/**
 * Stream naming, one convention for every stream: `<category>-<id>`, the first '-' splitting the category
 * (EventStoreDB's `$ce-` convention). Build names with `streamName`, read the parts back with
 * `streamCategory` / `entityIdOf`, and subscribe to a category with `categoryPrefix`.
 */

/** Stream naming: `<category>-<id>`; the first '-' splits the category ($ce- convention). */
export function streamName(category: string, id: string): string {
  if (category.includes('-')) throw new Error(`category must not contain '-': ${category}`);
  return `${category}-${id}`;
}

export function streamCategory(streamId: string): string {
  const i = streamId.indexOf('-');
  return i < 0 ? streamId : streamId.slice(0, i);
}

/** The id part of `<category>-<id>`: everything after the first '-' (the whole id when there is none). */
export function entityIdOf(streamId: string): string {
  const i = streamId.indexOf('-');
  return i < 0 ? streamId : streamId.slice(i + 1);
}

/** The prefix every stream of a category starts with (`subscription-`): what a subscription to the category filters on. */
export function categoryPrefix(category: string): string {
  return streamName(category, '');
}
