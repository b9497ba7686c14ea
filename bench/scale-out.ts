/**
 * 8. Scale out (issue 10): how fast a worker joins, and how fast shards recover when workers keep crashing.
 *
 * - `startup`: `temporal-kcl worker` spawned as a user runs it, compiled (as the package and the image run it) and from
 *   source (tsx), timed until its identity shows among the shared task queue's activity pollers (DescribeTaskQueue: it
 *   can take shards) and among its workflow pollers.
 * - `crash-failover`: two worker processes, four busy shards; a worker holding shards is SIGKILLed every 5–8 s (seeded)
 *   and restarted at once; per kill, the time until each shard it held delivers again, and the timeouts that wait was.
 *
 * - `share-drain`: a third worker joins two that hold a busy 16-shard stream: time until it has its share and the fleet
 *   is balanced; then a worker is stopped (SIGTERM): time until it exits and its shards deliver elsewhere; duplicates.
 *
 * Each section is a function of its own taking the bench context (wired into bench/run.ts by name).
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { defaultTableName, shardConsumerWorkflowId, streamConsumerWorkflowId, workerTaskQueue } from '../src/ids';
import { streamProgressQuery } from '../src/workflows/stream-consumer';
import { seededRandom } from '../test/helpers/keyed-producer';
import type { WorkerChild } from './lib/children';
import { type CliMode, CliWorkerChild, workerCommandLine } from './lib/cli-worker-child';
import type { BenchContext } from './lib/context';
import { lastWorkflowWorker, replayAfter, timelineBetween, timeoutsBetween, type TimeoutEvent } from './lib/history';
import { createStream, deleteStream, RateProducer, uniqueName } from './lib/kinesis';
import { startShardConsumer, STOP_TIMEOUT_MS, stopOrTerminate } from './lib/shard-run';
import { startStreamConsumer, stopStreamConsumer } from '../src/client/consumers';
import { max, median, round } from './lib/stats';

const { TaskQueueKind, TaskQueueType } = temporal.api.enums.v1;

/** Pollers of a task queue, by the identity they poll under. */
async function pollerIdentities(
  context: BenchContext,
  taskQueue: string,
  type: temporal.api.enums.v1.TaskQueueType,
): Promise<string[]> {
  const response = await context.client.workflowService.describeTaskQueue({
    namespace: context.stack.temporal.namespace,
    taskQueue: { name: taskQueue, kind: TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
    taskQueueType: type,
  });
  return (response.pollers ?? []).map((poller) => poller.identity ?? '');
}

// ---------------------------------------------------------------------------------------------------------------------
// startup

/** Start-ups measured (after one that warms the caches: tsx's, V8's compile cache, the workflow bundle). */
const STARTUP_RUNS = 5;
/** The issue's target. */
const STARTUP_TARGET_MS = 1_000;

export interface StartupRun {
  /** spawn → the worker's identity among the shared queue's activity pollers (ms). */
  activityPollMs: number;
  /** spawn → its identity among the shared queue's workflow pollers (ms). */
  workflowPollMs: number;
  /** spawn → the CLI's `ready` line (ms). */
  readyLineMs: number;
}

export interface StartupMode {
  mode: CliMode;
  /** node's arguments. */
  command: string;
  warmUp: StartupRun;
  runs: StartupRun[];
  activityPoll: { p50Ms: number; maxMs: number };
  workflowPoll: { p50Ms: number; maxMs: number };
  readyLine: { p50Ms: number; maxMs: number };
}

export interface StartupResult {
  /** The checkout whose CLI ran (BENCH_STARTUP_CHECKOUT, for a baseline). */
  checkout: string;
  /** `npm run build` before the compiled runs (ms). */
  buildMs: number;
  modes: StartupMode[];
  targetMs: number;
}

async function startOnce(
  context: BenchContext,
  name: string,
  mode: CliMode,
  checkout: string | undefined,
): Promise<StartupRun> {
  const taskQueue = uniqueName('bench-startup');
  const worker = new CliWorkerChild(name, context.endpoints, taskQueue, context.logDir, mode, checkout);
  try {
    let activityAt: number | undefined;
    let workflowAt: number | undefined;
    const deadline = worker.spawnedAt + 120_000;
    while (activityAt === undefined || workflowAt === undefined) {
      if (!worker.alive) throw new Error(`startup: the worker exited before polling\n${worker.tail()}`);
      if (Date.now() > deadline) throw new Error(`startup: no poll within 120 s\n${worker.tail()}`);
      const [activities, workflows] = await Promise.all([
        activityAt === undefined
          ? pollerIdentities(context, taskQueue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
          : Promise.resolve([]),
        workflowAt === undefined
          ? pollerIdentities(context, taskQueue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
          : Promise.resolve([]),
      ]);
      const now = Date.now();
      if (activities.some((identity) => identity.startsWith(worker.identityPrefix))) activityAt ??= now;
      if (workflows.some((identity) => identity.startsWith(worker.identityPrefix))) workflowAt ??= now;
      await new Promise((r) => setTimeout(r, 20));
    }
    const readyDeadline = Date.now() + 30_000;
    while (worker.readyAt === undefined && Date.now() < readyDeadline) await new Promise((r) => setTimeout(r, 20));
    return {
      activityPollMs: activityAt - worker.spawnedAt,
      workflowPollMs: workflowAt - worker.spawnedAt,
      readyLineMs: (worker.readyAt ?? Number.NaN) - worker.spawnedAt,
    };
  } finally {
    const how = await worker.stop();
    if (how !== 0) context.log(`  ${name}: the worker ended with ${String(how)} on SIGTERM`);
  }
}

const summary = (values: number[]) => ({ p50Ms: round(median(values), 0), maxMs: round(max(values), 0) });

export async function measureStartup(context: BenchContext): Promise<StartupResult> {
  const checkout = process.env.BENCH_STARTUP_CHECKOUT;
  const log = (line: string) => context.log(`  startup: ${line}`);
  const show = (r: StartupRun) =>
    `activity poll ${r.activityPollMs} ms, workflow poll ${r.workflowPollMs} ms, ready line ${r.readyLineMs} ms`;
  // The compiled CLI of the code as it is now (dist/ is build output, not in git).
  const built = Date.now();
  execFileSync('npm', ['run', 'build'], { cwd: checkout ?? resolve(__dirname, '..'), stdio: 'ignore' });
  const buildMs = Date.now() - built;
  log(`npm run build: ${buildMs} ms`);
  const modes: StartupMode[] = [];
  for (const mode of ['compiled', 'source'] as const) {
    const warmUp = await startOnce(context, `startup-${mode}-0`, mode, checkout);
    log(`${mode}, warm-up: ${show(warmUp)}`);
    const runs: StartupRun[] = [];
    for (let run = 1; run <= STARTUP_RUNS; run++) {
      runs.push(await startOnce(context, `startup-${mode}-${run}`, mode, checkout));
      log(`${mode}, run ${run}: ${show(runs.at(-1)!)}`);
    }
    const result: StartupMode = {
      mode,
      command: `node ${workerCommandLine(mode, '.')
        .map((arg) => arg.replace(/^\.\//, ''))
        .join(' ')}`,
      warmUp,
      runs,
      activityPoll: summary(runs.map((r) => r.activityPollMs)),
      workflowPoll: summary(runs.map((r) => r.workflowPollMs)),
      readyLine: summary(runs.map((r) => r.readyLineMs)),
    };
    log(
      `${mode}: activity poll p50 ${result.activityPoll.p50Ms} ms, max ${result.activityPoll.maxMs} ms; ` +
        `workflow poll p50 ${result.workflowPoll.p50Ms} ms, max ${result.workflowPoll.maxMs} ms`,
    );
    modes.push(result);
  }
  return { checkout: checkout ?? 'this one', buildMs, modes, targetMs: STARTUP_TARGET_MS };
}

// ---------------------------------------------------------------------------------------------------------------------
// crash-failover

const CRASH_SHARDS = 4;
const CRASH_RATE = 20;
const CRASH_RECORD_BYTES = 100;
const CRASH_SEED = 10;
/** The issue's target for the worst shard of any kill. */
const CRASH_TARGET_MS = 5_000;

export interface CrashShardSample {
  shardId: string;
  /** SIGKILL → the shard's next delivery (ms), on whichever worker. */
  failoverMs: number;
  /** Timeouts Temporal recorded for the shard between the kill and that delivery: what the failover waited for. */
  timeouts: TimeoutEvent[];
  /** How long the first workflow task on the normal queue after the kill took (the replay of the run), ms. */
  replayMs: number;
  /** The killed worker had also run the shard's last workflow task (the other worker replays first). */
  killedWorkflowWorker: boolean;
}

export interface CrashKill {
  /** ms after the first kill. */
  atMs: number;
  /** Worker queue of the killed worker. */
  killed: string;
  /** Shards whose last delivery before the kill was on the killed worker. */
  shards: CrashShardSample[];
  /** Restart: spawn → the replacement's `ready` message (ms). */
  restartReadyMs: number;
}

export interface CrashFailoverResult {
  workers: number;
  shards: number;
  ratePerShard: number;
  seed: number;
  kills: CrashKill[];
  /** Every shard sample of every kill, ms. */
  failoverMs: number[];
  p50Ms: number;
  maxMs: number;
  targetMs: number;
  /** Workflow task timeouts among all samples' timeouts. */
  workflowTaskTimeouts: number;
}

interface Delivery {
  worker: WorkerChild;
  shardId: string;
  at: number;
}

/** Every run's events of a workflow id, oldest run first: a shard consumer continues as new every maxBatchesPerRun. */
async function runsOf(context: BenchContext, workflowId: string) {
  const runs: { startMs: number; events: temporal.api.history.v1.IHistoryEvent[] }[] = [];
  for await (const execution of context.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
    const handle = context.client.workflow.getHandle(workflowId, execution.runId);
    const history = await handle.fetchHistory();
    runs.push({ startMs: execution.startTime.getTime(), events: history.events ?? [] });
  }
  return runs.sort((a, b) => a.startMs - b.startMs);
}

export async function measureCrashFailover(context: BenchContext): Promise<CrashFailoverResult> {
  const killCount = context.settings.crashKills ?? (context.settings.quick ? 3 : 10);
  const log = (line: string) => context.log(`  crash-failover: ${line}`);
  const random = seededRandom(CRASH_SEED);
  const taskQueue = uniqueName('bench-crash');
  const { streamName, shards } = await createStream(context.kinesis, CRASH_SHARDS, 'bench-crash');
  const applicationName = uniqueName('app-crash');
  await context.createLeaseTable(defaultTableName(applicationName));
  const deliveries: Delivery[] = [];
  const workers: WorkerChild[] = [];
  const startWorker = async () => {
    const worker = await context.startWorker({ name: 'crash-worker', processorMode: 'count', taskQueue });
    worker.onMessage((message) => {
      if (message.type === 'batch' && message.applicationName === applicationName && message.records > 0) {
        deliveries.push({ worker, shardId: message.shardId, at: message.at });
      }
    });
    workers.push(worker);
    return worker;
  };
  const lastDelivery = (shardId: string, before = Number.POSITIVE_INFINITY): Delivery | undefined => {
    for (let i = deliveries.length - 1; i >= 0; i--) {
      const delivery = deliveries[i]!;
      if (delivery.shardId === shardId && delivery.at <= before) return delivery;
    }
    return undefined;
  };
  const producer = new RateProducer(context.kinesis, streamName, shards, CRASH_RATE, CRASH_RECORD_BYTES);
  const handles: WorkflowHandle[] = [];
  const kills: { at: number; killed: WorkerChild; shards: string[]; restartReadyMs: number }[] = [];
  try {
    await Promise.all([startWorker(), startWorker()]);
    producer.start();
    for (const shard of shards) {
      handles.push(
        await startShardConsumer(context, {
          taskQueue,
          applicationName,
          streamName,
          shard,
          options: { initialPosition: 'TRIM_HORIZON' },
        }),
      );
    }
    // Steady state: every shard delivering.
    const settleFrom = Date.now();
    const settleDeadline = settleFrom + 120_000;
    while (!shards.every((shard) => (lastDelivery(shard.shardId)?.at ?? 0) > settleFrom + 3_000)) {
      if (Date.now() > settleDeadline) throw new Error('crash-failover: not every shard delivers within 120 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    let nextKillAt = Date.now();
    for (let kill = 0; kill < killCount; kill++) {
      await new Promise((r) => setTimeout(r, Math.max(0, nextKillAt - Date.now())));
      const now = Date.now();
      const holding = (worker: WorkerChild) =>
        shards.filter((shard) => lastDelivery(shard.shardId, now)?.worker === worker).map((shard) => shard.shardId);
      const candidates = workers.filter((worker) => worker.alive && holding(worker).length > 0);
      const victim = candidates[Math.floor(random() * candidates.length)] ?? workers[0]!;
      const held = holding(victim);
      const killedAt = Date.now();
      await victim.kill('SIGKILL');
      workers.splice(workers.indexOf(victim), 1);
      nextKillAt = killedAt + 5_000 + Math.floor(random() * 3_000);
      const restartFrom = Date.now();
      await startWorker();
      const restartReadyMs = Date.now() - restartFrom;
      kills.push({ at: killedAt, killed: victim, shards: held, restartReadyMs });
      log(
        `kill ${kill + 1}: ${victim.workerQueue} holding ${held.length} shard(s); replacement ready in ${restartReadyMs} ms`,
      );
    }
    // Every shard of every kill delivers again.
    const recoverDeadline = Date.now() + 120_000;
    while (
      !kills.every((k) => k.shards.every((shardId) => deliveries.some((d) => d.shardId === shardId && d.at > k.at)))
    ) {
      if (Date.now() > recoverDeadline) throw new Error('crash-failover: a shard did not deliver within 120 s');
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await producer.stop();
    // Before the workers stop: a consumer asked to stop needs a worker to end on.
    await Promise.all(handles.map((handle) => stopOrTerminate(handle, STOP_TIMEOUT_MS, log)));
    await Promise.all(workers.map((worker) => worker.stop()));
    await deleteStream(context.kinesis, streamName);
  }

  // What each wait was, from every run of each shard's consumer.
  const histories = new Map<string, Awaited<ReturnType<typeof runsOf>>>();
  for (const shard of shards) {
    histories.set(
      shard.shardId,
      await runsOf(context, shardConsumerWorkflowId(applicationName, streamName, shard.shardId)),
    );
  }
  const firstKill = kills[0]?.at ?? 0;
  const result: CrashKill[] = kills.map((k) => ({
    atMs: k.at - firstKill,
    killed: k.killed.workerQueue,
    restartReadyMs: k.restartReadyMs,
    shards: k.shards.map((shardId) => {
      const next = deliveries.find((d) => d.shardId === shardId && d.at > k.at)!;
      const runs = histories.get(shardId) ?? [];
      const timeouts = runs.flatMap((run) => timeoutsBetween(run.events, k.at, next.at));
      const replayMs = runs.map((run) => replayAfter(run.events, k.at)).find((ms) => Number.isFinite(ms)) ?? Number.NaN;
      const workflowWorker = runs
        .map((run) => lastWorkflowWorker(run.events, k.at))
        .filter((identity) => identity !== undefined)
        .at(-1);
      if (process.env.BENCH_DEBUG_FAILOVER) {
        const lines = runs.flatMap((run) => timelineBetween(run.events, k.at, next.at));
        context.log(`  killed ${k.killed.workerQueue}, ${shardId}:\n${lines.join('\n')}`);
      }
      return {
        shardId,
        failoverMs: next.at - k.at,
        timeouts,
        replayMs,
        killedWorkflowWorker:
          workflowWorker !== undefined && k.killed.workerQueue === workerTaskQueue(taskQueue, workflowWorker),
      };
    }),
  }));
  for (const [index, k] of result.entries()) {
    log(
      `kill ${index + 1}: ` +
        k.shards
          .map(
            (s) =>
              `${s.shardId.replace('shardId-', '')} ${s.failoverMs} ms` +
              (s.killedWorkflowWorker ? ` (workflow worker killed too, replay ${s.replayMs} ms)` : '') +
              (s.timeouts.length > 0
                ? ` [${s.timeouts.map((t) => `${t.what} ${t.timeoutType} +${t.atMs}`).join(', ')}]`
                : ''),
          )
          .join('; '),
    );
  }
  const failoverMs = result.flatMap((k) => k.shards.map((s) => s.failoverMs));
  const crash: CrashFailoverResult = {
    workers: 2,
    shards: CRASH_SHARDS,
    ratePerShard: CRASH_RATE,
    seed: CRASH_SEED,
    kills: result,
    failoverMs,
    p50Ms: round(median(failoverMs), 0),
    maxMs: round(max(failoverMs), 0),
    targetMs: CRASH_TARGET_MS,
    workflowTaskTimeouts: result
      .flatMap((k) => k.shards.flatMap((s) => s.timeouts))
      .filter((t) => t.what === 'workflow task').length,
  };
  log(
    `p50 ${crash.p50Ms} ms, max ${crash.maxMs} ms over ${failoverMs.length} shard failovers of ${kills.length} kills`,
  );
  return crash;
}

// ---------------------------------------------------------------------------------------------------------------------
// share-drain

const SHARE_SHARDS = 16;
const SHARE_RATE = 5;
const SHARE_RECORD_BYTES = 200;

export interface ShareDrainResult {
  shards: number;
  ratePerShard: number;
  /** A third worker joins two that hold all the shards. */
  join: {
    readyMs: number;
    /** Spawn → its first delivery, and → it delivers on every shard it holds once balanced (`share` of them). */
    firstShardMs: number;
    shareMs: number;
    share: number;
    /** Spawn → no worker holds more than ⌈S/3⌉ + 1 (by where each shard last delivered). */
    balancedMs: number;
    /** Spawn → the most and fewest shards on a worker are at most 2 apart (count balance settled). */
    evenMs: number;
  };
  /** SIGTERM of a worker holding shards. */
  drain: {
    held: number;
    /** SIGTERM → the process has exited. */
    exitMs: number;
    /** SIGTERM → every shard it held delivers on another worker. */
    movedMs: number;
    /** SIGTERM → no worker above ⌈S/2⌉ + 1 again. */
    balancedMs: number;
  };
  produced: number;
  delivered: number;
  /** Delivered − produced (every produced record delivered at least once): records delivered twice. */
  duplicates: number;
}

/**
 * How long a new worker takes to receive its share of a busy 16-shard stream, and how long a worker takes to drain
 * (SIGTERM: every shard it holds handed over gracefully). Library workers in child processes under a stream consumer
 * with placement on; records counted, so duplicates = delivered − produced.
 */
export async function measureShareDrain(context: BenchContext): Promise<ShareDrainResult> {
  const log = (line: string) => context.log(`  share-drain: ${line}`);
  const taskQueue = uniqueName('bench-share');
  const { streamName, shards } = await createStream(context.kinesis, SHARE_SHARDS, 'bench-share');
  const applicationName = uniqueName('app-share');
  await context.createLeaseTable(defaultTableName(applicationName));
  const batches: { worker: WorkerChild; shardId: string; at: number; records: number }[] = [];
  const workers: WorkerChild[] = [];
  const startWorker = async () => {
    const worker = await context.startWorker({ name: 'share-worker', processorMode: 'count', taskQueue });
    worker.onMessage((message) => {
      if (message.type === 'batch' && message.applicationName === applicationName && message.records > 0) {
        batches.push({ worker, shardId: message.shardId, at: message.at, records: message.records });
      }
    });
    workers.push(worker);
    return worker;
  };
  /** Where each shard last delivered (since `since`). */
  const holders = (since: number) => {
    const held = new Map<string, WorkerChild>();
    for (const batch of batches) if (batch.at >= since) held.set(batch.shardId, batch.worker);
    return held;
  };
  const worst = (since: number) => {
    const counts = new Map<WorkerChild, number>();
    for (const worker of holders(since).values()) counts.set(worker, (counts.get(worker) ?? 0) + 1);
    return Math.max(0, ...counts.values());
  };
  const until = async (what: string, predicate: () => boolean, timeoutMs = 120_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`share-drain: ${what} not within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const producer = new RateProducer(context.kinesis, streamName, shards, SHARE_RATE, SHARE_RECORD_BYTES);
  let join: ShareDrainResult['join'];
  let drain: ShareDrainResult['drain'];
  try {
    await Promise.all([startWorker(), startWorker()]);
    producer.start();
    await startStreamConsumer(context.client, {
      applicationName,
      streamName,
      taskQueue,
      processor: 'bench',
      shardOptions: { initialPosition: 'TRIM_HORIZON' },
    });
    const settledFrom = Date.now();
    await until('every shard delivering on two workers', () => holders(settledFrom).size === SHARE_SHARDS);
    await new Promise((r) => setTimeout(r, 5_000));

    // A third worker joins.
    const spawned = Date.now();
    const newcomer = await startWorker();
    const readyMs = Date.now() - spawned;
    const onNewcomer = () => new Set(batches.filter((b) => b.worker === newcomer).map((b) => b.shardId)).size;
    await until('the new worker delivers', () => onNewcomer() > 0);
    const firstShardMs = Date.now() - spawned;
    // Balanced: judged on deliveries of the last 3 s (a quiet moment of a shard does not count as a move).
    await until('balanced after the join', () => {
      const recent = Date.now() - 3_000;
      return holders(recent).size === SHARE_SHARDS && worst(recent) <= Math.ceil(SHARE_SHARDS / 3) + 1;
    }).catch(async (error: unknown) => {
      // What the coordinator saw, for the failure report.
      const progress = await context.client.workflow
        .getHandle(streamConsumerWorkflowId(applicationName, streamName))
        .query(streamProgressQuery)
        .then((p) => p.workers, String);
      log(`the coordinator's view of the workers: ${JSON.stringify(progress)}`);
      throw error;
    });
    const balancedMs = Date.now() - spawned;
    // Even: the planner's count balance settled (most and fewest shards on a worker at most 2 apart).
    await until('even after the join', () => {
      const counts = new Map<WorkerChild, number>();
      for (const worker of holders(Date.now() - 3_000).values()) counts.set(worker, (counts.get(worker) ?? 0) + 1);
      return counts.size === 3 && Math.max(...counts.values()) - Math.min(...counts.values()) <= 2;
    });
    const evenMs = Date.now() - spawned;
    // Its share: the shards it holds once balanced; the time of its first delivery on the last of them.
    const mine = [...holders(Date.now() - 3_000)].filter(([, w]) => w === newcomer).map(([shardId]) => shardId);
    const firstOn = mine.map((shardId) => batches.find((b) => b.worker === newcomer && b.shardId === shardId)!.at);
    const share = mine.length;
    const shareMs = Math.max(...firstOn) - spawned;
    join = { readyMs, firstShardMs, shareMs, share, balancedMs, evenMs };
    log(
      `join: ready ${readyMs} ms, first shard ${firstShardMs} ms, bound ${balancedMs} ms, even ${evenMs} ms, its ${share} shards ${shareMs} ms`,
    );
    await new Promise((r) => setTimeout(r, 5_000));

    // A worker holding shards drains.
    const now = Date.now();
    const victim = workers.find((w) => w !== newcomer && [...holders(now - 3_000).values()].includes(w))!;
    const held = [...holders(now - 3_000)].filter(([, w]) => w === victim).map(([shardId]) => shardId);
    const termAt = Date.now();
    const exited = victim.stop(30_000).then(() => Date.now() - termAt);
    await until('every drained shard delivers elsewhere', () =>
      held.every((shardId) => batches.some((b) => b.shardId === shardId && b.at > termAt && b.worker !== victim)),
    );
    const movedMs = Date.now() - termAt;
    const exitMs = await exited;
    workers.splice(workers.indexOf(victim), 1);
    await until('balanced after the drain', () => {
      const recent = Date.now() - 3_000;
      const onVictim = [...holders(recent).values()].includes(victim);
      return !onVictim && holders(recent).size === SHARE_SHARDS && worst(recent) <= Math.ceil(SHARE_SHARDS / 2) + 1;
    });
    drain = { held: held.length, exitMs, movedMs, balancedMs: Date.now() - termAt };
    log(`drain of ${held.length} shards: exit ${exitMs} ms, all moved ${movedMs} ms, balanced ${drain.balancedMs} ms`);
  } finally {
    await producer.stop();
  }
  const delivered = () => batches.reduce((sum, b) => sum + b.records, 0);
  await until('every produced record delivered', () => delivered() >= producer.produced, 120_000).catch(
    (error: unknown) => log(String(error)),
  );
  await stopStreamConsumer(context.client, { applicationName, streamName, wait: true }).catch((error: unknown) =>
    log(`stop: ${String(error)}`),
  );
  await Promise.all(workers.map((worker) => worker.stop()));
  await deleteStream(context.kinesis, streamName);
  const result: ShareDrainResult = {
    shards: SHARE_SHARDS,
    ratePerShard: SHARE_RATE,
    join,
    drain,
    produced: producer.produced,
    delivered: delivered(),
    duplicates: delivered() - producer.produced,
  };
  log(`${result.produced} records produced, ${result.delivered} delivered: ${result.duplicates} duplicates`);
  return result;
}
