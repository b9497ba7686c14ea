import { Command, Option } from 'commander';
import { createCodecServer } from '../codec/codec-server';
import { KclPayloadCodec, parseCodecKey } from '../codec/payload-codec';
import { InvalidConfigError } from '../errors';
import { parsePort, untilInterrupted } from './options';

interface CodecFlags {
  port: number;
  host: string;
  key?: string;
  allowOrigin: string[];
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function codecServerCommand(): Command {
  return new Command('codec-server')
    .description(
      'Serve the payload codec (gzip + AES-256-GCM) to the Temporal UI and CLI, so they can show encrypted payloads: ' +
        'start the UI with --ui-codec-endpoint http://<host>:<port>',
    )
    .option('--port <port>', 'port to listen on', parsePort, 8888)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .addOption(
      new Option('--key <key>', 'AES-256 key, base64 or hex (default: none; required)').env('TEMPORAL_KCL_CODEC_KEY'),
    )
    .option('--allow-origin <origin>', 'origin of the Temporal UI allowed to call (repeatable; default any)', collect)
    .action(async (flags: CodecFlags) => {
      if (!flags.key)
        throw new InvalidConfigError(
          'the codec server needs --key or TEMPORAL_KCL_CODEC_KEY (e.g. `openssl rand -base64 32`)',
        );
      const server = createCodecServer(new KclPayloadCodec({ encryptionKey: parseCodecKey(flags.key) }), {
        ...(flags.allowOrigin?.length ? { allowOrigins: flags.allowOrigin } : {}),
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(flags.port, flags.host, () => resolve());
      });
      console.log(`codec server on http://${flags.host}:${flags.port} (POST /encode, /decode); Ctrl-C to stop`);
      await untilInterrupted();
      await new Promise((resolve) => server.close(resolve));
    });
}
