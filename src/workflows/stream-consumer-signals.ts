/**
 * Signals a stream consumer receives from its shard consumers. In a module of their own so that both workflows import
 * them without importing each other.
 */
import { defineSignal } from '@temporalio/workflow';
import type { ShardConsumerResult } from '../consumer-types';

/** A shard consumer ended; at shard end it names the children that may now start. */
export type ShardEnded = Pick<ShardConsumerResult, 'shardId' | 'reason' | 'childShards'>;

export const shardEndedSignal = defineSignal<[ShardEnded]>('shardEnded');

/**
 * A shard consumer handed its shard over because its worker is stopping (SIGTERM, `shutdown()`): that worker takes no
 * more shards. Its polls may look fresh for up to a minute, so placement would otherwise keep choosing it.
 */
export const workerLeavingSignal = defineSignal<[{ workerQueue: string }]>('workerLeaving');

/**
 * A shard consumer failed its shard over from a worker that stopped answering (a heartbeat or schedule-to-start
 * timeout): placement starts its fleet watch again, in case that worker ran it.
 */
export const workerLostSignal = defineSignal<[{ workerQueue: string }]>('workerLost');
