#!/usr/bin/env node
import * as nodeModule from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Help, type Option } from 'commander';
import { KclError } from '../errors';
import type * as CodecCommand from './codec-command';
import type * as ConsumerCommands from './consumer-commands';
import type * as DemoCommand from './demo-command';
import type * as DevCommand from './dev-command';
import type * as ImportCommand from './import-command';
import type * as WorkerCommand from './worker-command';

// Node >= 22.1 keeps the bytecode of the modules it compiles (the Temporal SDK, protobuf, the AWS SDK) on disk, so the
// next start skips most of their compilation; a no-op on older Node.
(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();

/**
 * The commands, each loaded only when it is used: a worker does not load the dev stack, the demo or the codec server
 * (their modules and what they import), and none of them loads the Temporal worker but `worker`.
 */
/* eslint-disable @typescript-eslint/no-require-imports -- lazy loading needs a synchronous require */
const COMMANDS: Record<string, () => Command[]> = {
  demo: () => [(require('./demo-command') as typeof DemoCommand).demoCommand()],
  dev: () => [(require('./dev-command') as typeof DevCommand).devCommand()],
  worker: () => [(require('./worker-command') as typeof WorkerCommand).workerCommand()],
  consumers: () => {
    const consumers = require('./consumer-commands') as typeof ConsumerCommands;
    return [consumers.startCommand(), consumers.stopCommand(), consumers.statusCommand()];
  },
  'codec-server': () => [(require('./codec-command') as typeof CodecCommand).codecServerCommand()],
  'import-checkpoints': () => [(require('./import-command') as typeof ImportCommand).importCheckpointsCommand()],
};
/* eslint-enable @typescript-eslint/no-require-imports */

/** Which entry of COMMANDS defines a command. */
const MODULE_OF: Record<string, string> = { start: 'consumers', stop: 'consumers', status: 'consumers' };

/** The package's version (package.json sits two levels up from src/cli and from dist/cli). */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

/** Variables whose values help must not print. */
const SECRET = /KEY|SECRET|TOKEN|PASSWORD/;

/** Commander's option description, plus the value an option's environment variable has now (secrets masked). */
class EnvironmentHelp extends Help {
  override optionDescription(option: Option): string {
    const described = super.optionDescription(option);
    const value = option.envVar ? process.env[option.envVar] : undefined;
    if (!option.envVar || value === undefined || value === '') return described;
    return `${described} (now ${option.envVar}=${SECRET.test(option.envVar) ? '***' : value})`;
  }
}

/**
 * The `temporal-kcl` command line: every command, or only `command`'s when it names one (what `main` runs: the other
 * commands' modules are then not loaded).
 */
export function buildProgram(command?: string): Command {
  const program = new Command('temporal-kcl')
    .description('Kinesis consumers as durable Temporal workflows (KCL-compatible checkpoints in DynamoDB).')
    .version(packageVersion(), '--version', 'print the version of temporal-kcl')
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions();
  const only = command === undefined ? undefined : (MODULE_OF[command] ?? command);
  const modules = only !== undefined && only in COMMANDS ? [only] : Object.keys(COMMANDS);
  for (const name of modules) for (const defined of COMMANDS[name]!()) program.addCommand(defined);
  for (const each of [program, ...program.commands]) each.createHelp = () => new EnvironmentHelp();
  return program;
}

/** Runs the CLI; exits non-zero with a one-line message on bad input or failure. */
export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    // The command is the first argument that is not an option (the program's own options take no values).
    await buildProgram(argv.slice(2).find((arg) => !arg.startsWith('-'))).parseAsync(argv);
  } catch (error) {
    const message = error instanceof KclError || error instanceof Error ? error.message : String(error);
    console.error(`temporal-kcl: ${message}`);
    process.exitCode = 1;
  }
}

if (require.main === module) {
  void main();
}
