import { defineSearchAttributeKey, SearchAttributeType, TypedSearchAttributes } from '@temporalio/common';

/**
 * Custom search attributes that let the Temporal UI list and filter consumers by application, stream and shard.
 * The dev stack registers them; on a production cluster register them once with
 * `temporal operator search-attribute create --name KclApplication --type Keyword` (and the same for the others).
 *
 * Pure module: workflows import it.
 */
export const KCL_APPLICATION = defineSearchAttributeKey('KclApplication', SearchAttributeType.KEYWORD);
export const KCL_STREAM = defineSearchAttributeKey('KclStream', SearchAttributeType.KEYWORD);
export const KCL_SHARD = defineSearchAttributeKey('KclShard', SearchAttributeType.KEYWORD);
/** The consumer's current state (e.g. PROCESSING, ENDED), kept up to date by the workflow. */
export const KCL_STATE = defineSearchAttributeKey('KclState', SearchAttributeType.KEYWORD);

export const KCL_SEARCH_ATTRIBUTES = [KCL_APPLICATION, KCL_STREAM, KCL_SHARD, KCL_STATE] as const;

/** `Name=Type` pairs as `temporal server start-dev --search-attribute` and `temporal operator search-attribute create` take them. */
export function searchAttributeCliPairs(): string[] {
  return KCL_SEARCH_ATTRIBUTES.map((key) => `${key.name}=${TypedSearchAttributes.toMetadataType(key.type)}`);
}
