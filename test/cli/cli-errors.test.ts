/**
 * Bad input to the `temporal-kcl` CLI: every mistake ends with a non-zero exit code and one clear message on stderr
 * (nothing on stdout); `--help` on every command exits 0 and describes it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildProgram } from '../../src/cli/main';
import { streamConsumerWorkflowId } from '../../src/ids';
import { cliEnvironment, type CliResult, killAllCliProcesses, runCli } from '../helpers/cli';
import { createStream, kclTestContext, type KclTestContext } from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

/** Asserts a failed run: non-zero exit, nothing on stdout, and stderr matching every pattern. */
function assertFailed(run: CliResult, ...patterns: RegExp[]): void {
  const shown = `exit ${run.code} (${run.signal ?? 'no signal'})\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;
  assert.equal(run.signal, null, shown);
  assert.notEqual(run.code, 0, shown);
  assert.equal(run.stdout, '', shown);
  for (const pattern of patterns) assert.match(run.stderr, pattern, shown);
}

const squeeze = (text: string) => text.replace(/\s+/g, ' ').trim();

describe('temporal-kcl on bad input', () => {
  let context: KclTestContext;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    context = await kclTestContext();
    env = cliEnvironment(context.stack, { TEMPORAL_KCL_TASK_QUEUE: uniqueName('cli-errors-tq') });
  });
  after(async () => {
    await killAllCliProcesses();
    await context.close();
  });

  test('start for a stream that does not exist names the stream', async () => {
    const streamName = uniqueName('no-such-stream');
    const run = await runCli(['start', '--app', 'app', '--stream', streamName], env);
    assertFailed(run, new RegExp(`stream ${streamName} not found`), /--kinesis-endpoint/);
  });

  test('start with a bad --initial-position lists the choices', async () => {
    const run = await runCli(['start', '--app', 'app', '--stream', 's', '--initial-position', 'OLDEST'], env);
    assertFailed(run, /--initial-position/, /'OLDEST' is invalid/, /LATEST, TRIM_HORIZON, AT_TIMESTAMP/);
  });

  test('start with AT_TIMESTAMP but no --timestamp says --timestamp is needed', async () => {
    const run = await runCli(['start', '--app', 'app', '--stream', 's', '--initial-position', 'AT_TIMESTAMP'], env);
    assertFailed(run, /AT_TIMESTAMP needs --timestamp/);
  });

  test('start with a malformed --timestamp shows the expected form', async () => {
    // Not a date; no time zone; a day that does not exist (Date would silently roll it over to March 2).
    for (const timestamp of ['yesterday', '2026-01-31T12:00:00', '2026-02-30T12:00:00Z']) {
      const run = await runCli(
        ['start', '--app', 'app', '--stream', 's', '--initial-position', 'AT_TIMESTAMP', '--timestamp', timestamp],
        env,
      );
      assertFailed(run, /--timestamp/, new RegExp(`'${timestamp}' is invalid`), /ISO-8601 date-time with a time zone/);
    }
  });

  test('start without --app says the option is required', async () => {
    const run = await runCli(['start', '--stream', 's'], env);
    assertFailed(run, /required option '--app <name>' not specified/);
  });

  test('worker with a processor module that does not exist says it was not found', async () => {
    const run = await runCli(['worker', '--processor', './missing.js'], env);
    assertFailed(run, /processor module \.\/missing\.js not found/);
  });

  test('worker with a bad --max-shards (flag or TEMPORAL_KCL_MAX_SHARDS) gives the accepted range', async () => {
    for (const value of ['0', '-3', 'many', '2.5', '10001']) {
      const run = await runCli(['worker', '--processor', 'test/fixtures/file-appending-processor.ts', '--max-shards', value], env);
      assertFailed(run, /--max-shards/, new RegExp(`${value.replace('.', '\\.')}`), /between 1 and 10000/);
    }
    const fromEnv = await runCli(['worker', '--processor', 'test/fixtures/file-appending-processor.ts'], {
      ...env,
      TEMPORAL_KCL_MAX_SHARDS: 'zero',
    });
    assertFailed(fromEnv, /--max-shards/, /zero/, /between 1 and 10000/);
  });

  test('worker with a module that does not default-export a function says what is needed', async () => {
    const run = await runCli(['worker', '--processor', 'test/fixtures/not-a-processor.ts'], env);
    assertFailed(
      run,
      /processor module test\/fixtures\/not-a-processor\.ts must default-export a processor factory/,
      /a function called with \{ applicationName, streamName, shardId \}/,
      /its default export is missing/,
    );
  });

  test('an unreachable Temporal: status and worker say they cannot reach it', async () => {
    const [status, worker] = await Promise.all([
      runCli(['status', '--app', 'app', '--stream', 's', '--address', '127.0.0.1:1'], env),
      runCli(['worker', '--processor', 'src/examples/logging-processor.ts', '--address', '127.0.0.1:1'], env),
    ]);
    assertFailed(status, /cannot reach Temporal at 127\.0\.0\.1:1/, /--address/);
    assertFailed(worker, /cannot reach Temporal at 127\.0\.0\.1:1/, /--address/);
  });

  test('an invalid TEMPORAL_ADDRESS in the environment is named', async () => {
    const run = await runCli(['status', '--app', 'app', '--stream', 's'], {
      ...env,
      TEMPORAL_ADDRESS: 'not an address',
    });
    assertFailed(run, /invalid environment: TEMPORAL_ADDRESS: expected host:port/);
  });

  test('status and stop for a consumer that does not exist say so', async () => {
    // The stream exists; no consumer of it was started under this application.
    const streamName = await createStream(context.kinesis, 1, 'cli-errors');
    const applicationName = uniqueName('never-started');
    const workflowId = streamConsumerWorkflowId(applicationName, streamName);
    const consumer = ['--app', applicationName, '--stream', streamName];
    const [status, stop] = await Promise.all([
      runCli(['status', ...consumer], env),
      runCli(['stop', ...consumer], env),
    ]);
    for (const run of [status, stop]) {
      assertFailed(run, new RegExp(`no consumer found: workflow ${workflowId} does not exist`), /temporal-kcl start/);
    }
  });

  test('an unknown command is named, with a pointer to --help', async () => {
    const run = await runCli(['frobnicate'], env);
    assertFailed(run, /unknown command 'frobnicate'/, /--help/);
  });

  test('--help on the program and on every command exits 0 and describes it', async () => {
    const program = buildProgram();
    const commands = [
      { args: [] as string[], command: program, usage: 'temporal-kcl [options] [command]' },
      ...program.commands.map((command) => ({
        args: [command.name()],
        command,
        usage: `temporal-kcl ${command.name()} [options]`,
      })),
    ];
    const names = program.commands.map((command) => command.name());
    for (const name of ['worker', 'start', 'stop', 'status', 'demo', 'dev']) {
      assert.ok(names.includes(name), `the ${name} command exists (commands: ${names.join(', ')})`);
    }
    const runs = await Promise.all(commands.map(({ args }) => runCli([...args, '--help'], env)));
    commands.forEach(({ args, command, usage }, i) => {
      const run = runs[i]!;
      const what = `temporal-kcl ${args.join(' ')} --help`;
      assert.equal(run.code, 0, `${what}: ${run.stderr}`);
      assert.equal(run.stderr, '', what);
      const help = squeeze(run.stdout);
      assert.ok(help.startsWith(`Usage: ${usage}`), `${what} starts with its usage:\n${run.stdout}`);
      assert.ok(command.description().length > 20, `${what} has a description`);
      assert.ok(help.includes(squeeze(command.description())), `${what} shows its description:\n${run.stdout}`);
      for (const option of command.options) {
        assert.ok(help.includes(option.flags), `${what} lists ${option.flags}`);
      }
      for (const sub of command.commands) {
        assert.ok(help.includes(sub.name()), `${what} lists the ${sub.name()} command`);
      }
    });
  });
});
