export * from './aws/clients';
export * from './errors';
export * from './positions';
export * from './record-processor';
export { startDevStack, type DevStack, type DevStackOptions } from './dev/dev-stack';
