/**
 * An in-memory lease table for workflow tests, with the conditional writes of the real one (src/checkpoint): a
 * checkpoint needs the owner and the counter the writer holds, and every write moves the counter on.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { ParentStatus } from '../../src/consumer-types';
import { FailureType } from '../../src/failure-types';
import { type Checkpoint, formatPosition, SentinelCheckpoint } from '../../src/positions';

/** A lease as the fake table holds it (the fields of KCL's lease item that the consumer uses). */
export interface FakeLease {
  shardId: string;
  owner?: string;
  counter: number;
  checkpoint?: Checkpoint;
  parentShardIds: string[];
  childShardIds?: string[];
}

/** A checkpoint the fake table accepted. */
export interface WrittenCheckpoint {
  shardId: string;
  owner: string;
  /** The counter the writer presented (the new counter is one more). */
  counter: number;
  checkpoint: Checkpoint;
  childShardIds?: string[];
}

/** The lease table, with the conditional writes of the real one: owner and counter must match, every write counts. */
export class FakeLeaseTable {
  readonly leases = new Map<string, FakeLease>();
  readonly written: WrittenCheckpoint[] = [];
  readonly conflicts: { shardId: string; owner: string; counter: number }[] = [];
  /** Parents that have left the stream (their records aged out). */
  readonly agedOut = new Set<string>();

  /** Puts a lease as another worker or an earlier consumer left it. */
  put(lease: Partial<FakeLease> & { shardId: string }): FakeLease {
    const full: FakeLease = { counter: 1, parentShardIds: [], ...lease };
    this.leases.set(lease.shardId, full);
    return full;
  }

  get(shardId: string): FakeLease | undefined {
    return this.leases.get(shardId);
  }

  claim(shardId: string, owner: string, parentShardIds: string[]): FakeLease {
    const existing = this.leases.get(shardId);
    if (!existing) return this.put({ shardId, owner, counter: 1, parentShardIds });
    existing.owner = owner;
    existing.counter++;
    return existing;
  }

  /** Another worker takes the shard over: the consumer's next fenced write must fail. */
  steal(shardId: string, owner = 'another-worker'): void {
    const lease = this.leases.get(shardId);
    if (!lease) throw new Error(`no lease ${shardId}`);
    lease.owner = owner;
    lease.counter++;
  }

  checkpoint(input: {
    shardId: string;
    owner: string;
    counter: number;
    checkpoint: Checkpoint;
    childShardIds?: string[];
  }): { counter: number } {
    const lease = this.leases.get(input.shardId);
    if (!lease || lease.owner !== input.owner || lease.counter !== input.counter) {
      this.conflicts.push({ shardId: input.shardId, owner: input.owner, counter: input.counter });
      throw ApplicationFailure.nonRetryable(
        `lease ${input.shardId} is held by ${lease?.owner ?? 'nobody'} at ${lease?.counter ?? '-'}, not by ${input.owner} at ${input.counter}`,
        FailureType.CheckpointConflict,
      );
    }
    lease.counter++;
    lease.checkpoint = input.checkpoint;
    if (input.childShardIds) lease.childShardIds = input.childShardIds;
    this.written.push({
      shardId: input.shardId,
      owner: input.owner,
      counter: input.counter,
      checkpoint: input.checkpoint,
      ...(input.childShardIds ? { childShardIds: input.childShardIds } : {}),
    });
    return { counter: lease.counter };
  }

  /** Owner-conditioned renewal: a new counter, and the lease as it is (CheckpointConflict if another owner holds it). */
  renew(shardId: string, owner: string): FakeLease {
    const lease = this.leases.get(shardId);
    if (!lease || lease.owner !== owner) {
      this.conflicts.push({ shardId, owner, counter: -1 });
      throw ApplicationFailure.nonRetryable(
        `lease ${shardId} is held by ${lease?.owner ?? 'nobody'}, not by ${owner}`,
        FailureType.CheckpointConflict,
      );
    }
    lease.counter++;
    return { ...lease };
  }

  release(shardId: string, owner: string, counter: number): void {
    const lease = this.leases.get(shardId);
    if (lease && lease.owner === owner && lease.counter === counter) {
      delete lease.owner;
      lease.counter++;
    }
  }

  parentStatus(shardId: string): ParentStatus {
    const lease = this.leases.get(shardId);
    const checkpoint = lease?.checkpoint;
    if (checkpoint === SentinelCheckpoint.SHARD_END) return { shardId, state: 'ENDED', checkpoint };
    if (this.agedOut.has(shardId)) return { shardId, state: 'AGED_OUT', ...(checkpoint ? { checkpoint } : {}) };
    if (!lease) return { shardId, state: 'NOT_STARTED' };
    return { shardId, state: 'IN_PROGRESS', ...(checkpoint ? { checkpoint } : {}) };
  }

  /** The positions written for a shard, in order (sentinels as strings). */
  positions(shardId: string): string[] {
    return this.written.filter((w) => w.shardId === shardId).map((w) => formatPosition(w.checkpoint));
  }
}
