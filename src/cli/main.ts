#!/usr/bin/env node
import { Command } from 'commander';
import { KclError } from '../errors';
import { codecServerCommand } from './codec-command';
import { startCommand, statusCommand, stopCommand } from './consumer-commands';
import { demoCommand } from './demo-command';
import { devCommand } from './dev-command';
import { workerCommand } from './worker-command';

/** The `temporal-kcl` command line. */
export function buildProgram(): Command {
  const program = new Command('temporal-kcl')
    .description('Kinesis consumers as durable Temporal workflows (KCL-compatible checkpoints in DynamoDB).')
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions();
  program.addCommand(demoCommand());
  program.addCommand(devCommand());
  program.addCommand(workerCommand());
  program.addCommand(startCommand());
  program.addCommand(stopCommand());
  program.addCommand(statusCommand());
  program.addCommand(codecServerCommand());
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
