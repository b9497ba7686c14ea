#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Help, type Option } from 'commander';
import { KclError } from '../errors';
import { codecServerCommand } from './codec-command';
import { startCommand, statusCommand, stopCommand } from './consumer-commands';
import { demoCommand } from './demo-command';
import { devCommand } from './dev-command';
import { importCheckpointsCommand } from './import-command';
import { workerCommand } from './worker-command';

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

/** The `temporal-kcl` command line. */
export function buildProgram(): Command {
  const program = new Command('temporal-kcl')
    .description('Kinesis consumers as durable Temporal workflows (KCL-compatible checkpoints in DynamoDB).')
    .version(packageVersion(), '--version', 'print the version of temporal-kcl')
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions();
  program.addCommand(demoCommand());
  program.addCommand(devCommand());
  program.addCommand(workerCommand());
  program.addCommand(startCommand());
  program.addCommand(stopCommand());
  program.addCommand(statusCommand());
  program.addCommand(codecServerCommand());
  program.addCommand(importCheckpointsCommand());
  for (const command of [program, ...program.commands]) command.createHelp = () => new EnvironmentHelp();
  return program;
}

/** Runs the CLI; exits non-zero with a one-line message on bad input or failure. */
export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    const message = error instanceof KclError || error instanceof Error ? error.message : String(error);
    console.error(`temporal-kcl: ${message}`);
    process.exitCode = 1;
  }
}

if (require.main === module) {
  void main();
}
