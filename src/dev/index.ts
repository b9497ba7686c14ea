/**
 * `temporal-kcl/dev`: the local stack (Temporal dev server, Kinesis and DynamoDB emulators) for tests and trying things
 * out. Its emulators and `@temporalio/testing` are development dependencies of temporal-kcl: install them next to it
 * (`npm install --save-dev @temporalio/testing dynalite kinesis-local`) to use this entry point.
 */
export { startDevStack, KINESIS_EMULATORS, type DevStack, type DevStackOptions } from './dev-stack';
export { requireDevDependencies, DEV_DEPENDENCIES } from './dev-dependencies';
