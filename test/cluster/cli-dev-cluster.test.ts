/**
 * `temporal-kcl dev --cluster` (`npm run cluster`), run from source: it prints the same endpoints block as
 * `temporal-kcl dev` plus the cluster's services; frontend, history, matching and worker are separate processes on
 * PostgreSQL with SQL visibility; the namespace and the Kcl* search attributes are registered; the Web UI reaches the
 * frontend; and SIGINT stops all of it (exit 0, none of its processes left, its PostgreSQL data removed).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { Connection } from '@temporalio/client';
import { getFreeLowPort } from '../../src/dev/net';
import { KCL_SEARCH_ATTRIBUTES } from '../../src/search-attributes';
import { killAllCliProcesses, outputLine, spawnCli } from '../helpers/cli';
import { alive, descendants } from '../helpers/process-group';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

describe('temporal-kcl dev --cluster', () => {
  after(async () => {
    await killAllCliProcesses();
  });

  test('prints the endpoints block, runs 4 services on PostgreSQL with the UI on the frontend; SIGINT stops it all', async (t) => {
    // Prepare
    const ports = [await getFreeLowPort(), await getFreeLowPort(), await getFreeLowPort(), await getFreeLowPort()];
    const [temporalPort, uiPort, kinesisPort, dynamoDbPort] = ports as [number, number, number, number];
    const started = Date.now();

    // Act
    const dev = spawnCli(
      [
        'dev',
        '--cluster',
        '--temporal-port',
        String(temporalPort),
        '--ui-port',
        String(uiPort),
        '--kinesis-port',
        String(kinesisPort),
        '--dynamodb-port',
        String(dynamoDbPort),
      ],
      { ...process.env, NODE_NO_WARNINGS: '1' },
    );
    await dev.waitFor(/Press Ctrl-C to stop/, 180_000);
    const readyMs = Date.now() - started;
    const out = dev.stdout();

    // Assess: the dev block, on the ports asked for, plus the cluster's lines.
    const [, address, namespace] = outputLine(out, /^Temporal {2,}(\S+) {2}\(namespace (\S+)\)$/m);
    const [, uiUrl] = outputLine(out, /^Temporal UI {2,}(\S+)$/m);
    outputLine(out, new RegExp(`^Kinesis {2,}http://127\\.0\\.0\\.1:${kinesisPort} {2}\\(kinesis-local\\)$`, 'm'));
    outputLine(out, new RegExp(`^DynamoDB {2,}http://127\\.0\\.0\\.1:${dynamoDbPort} {2}\\(dynalite\\)$`, 'm'));
    outputLine(out, /^Logs {2,}\S+$/m);
    outputLine(out, /^ {2}export TEMPORAL_ADDRESS=\S+ TEMPORAL_NAMESPACE=default /m);
    assert.equal(address, `127.0.0.1:${temporalPort}`);
    assert.equal(namespace, 'default');
    assert.equal(uiUrl, `http://127.0.0.1:${uiPort}`);
    const [, version, services] = outputLine(out, /^Cluster {2,}Temporal Server (\S+): (.*) \(separate processes/m);
    assert.equal(version, '1.29.1');
    assert.match(services!, new RegExp(`frontend :${temporalPort}`));
    const [, dataDir] = outputLine(
      out,
      /^PostgreSQL {2,}postgres:\/\/temporal@127\.0\.0\.1:\d+ {2}\(.*, data in (\S+)\)$/m,
    );

    // Four services, each a process of its own, and PostgreSQL: children of the CLI.
    const processes = descendants(dev.pid);
    for (const service of ['frontend', 'history', 'matching', 'worker']) {
      const found = processes.filter((p) => p.command.includes(`start --service ${service}`));
      assert.equal(found.length, 1, `one ${service} process among ${JSON.stringify(processes)}`);
    }
    assert.ok(
      processes.some((p) => /postgres(ql)?\/\d+\/bin\/postgres -D/.test(p.command)),
      JSON.stringify(processes),
    );
    assert.ok(
      processes.some((p) => p.command.includes(`ui-server --ip 127.0.0.1 --port ${uiPort} --frontend ${address}`)),
    );

    // PostgreSQL for persistence and visibility; the namespace and the search attributes are there.
    const connection = await Connection.connect({ address });
    try {
      const info = await connection.workflowService.getClusterInfo({});
      assert.equal(info.persistenceStore, 'postgres12');
      assert.equal(info.visibilityStore, 'postgres12');
      const attributes = await connection.operatorService.listSearchAttributes({ namespace });
      for (const key of KCL_SEARCH_ATTRIBUTES) assert.ok(key.name in (attributes.customAttributes ?? {}), key.name);
    } finally {
      await connection.close();
    }

    // The Web UI's API lists the namespace through the frontend (its client may redial once).
    type Namespaces = { namespaces?: { namespaceInfo?: { name?: string } }[] };
    let listed: Namespaces = {};
    for (let tries = 0; !listed.namespaces && tries < 30; tries++) {
      if (tries > 0) await sleep(500);
      listed = (await (await fetch(new URL('/api/v1/namespaces', uiUrl))).json()) as Namespaces;
    }
    assert.ok(
      listed.namespaces?.some((ns) => ns.namespaceInfo?.name === namespace),
      JSON.stringify(listed).slice(0, 500),
    );

    // Act: Ctrl-C.
    const stopping = Date.now();
    const exit = await dev.kill('SIGINT');
    const stopMs = Date.now() - stopping;
    t.diagnostic(`dev --cluster ready in ${readyMs} ms, stopped in ${stopMs} ms; ${processes.length} processes`);

    // Assess: exit 0, nothing of it left, its data removed.
    assert.deepEqual(exit, { code: 0, signal: null });
    const left = processes.filter((p) => alive(p.pid));
    assert.deepEqual(left, [], 'no process of the cluster outlives it');
    assert.equal(existsSync(dataDir!), false, `${dataDir} removed`);
  });
});
