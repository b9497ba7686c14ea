/**
 * The one error family of temporal-kcl. Every error the library throws on its own account is a
 * {@link KclError}; subclasses set `name`, carry the context a reader needs, and keep the original
 * error as `cause`.
 *
 * Workflow code never sees these classes: activities translate them into `ApplicationFailure`s whose
 * `type` is the error's `name` (see `FailureType`), which is what retry policies and workflows reason about.
 *
 * This module is pure (no Node, no AWS SDK) so workflows may import it.
 */
export class KclError extends Error {
  override readonly name: string = 'KclError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A user-supplied option, CLI flag or environment variable is invalid. Never retried. */
export class InvalidConfigError extends KclError {
  override readonly name = 'InvalidConfig';
  constructor(
    message: string,
    readonly issues: readonly string[] = [],
  ) {
    super(message);
  }
}

/** A tool the local stack needs (Temporal CLI, Java test server, emulator) could not be found, built or started. */
export class ToolUnavailableError extends KclError {
  override readonly name = 'ToolUnavailable';
  constructor(
    readonly tool: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${tool}: ${message}`, options);
  }
}

/**
 * The lease table exists but cannot hold KCL leases (its key is not exactly one HASH key `leaseKey` of type S), or an
 * item in it cannot be read as a lease. temporal-kcl never modifies such a table. Never retried.
 */
export class LeaseTableSchemaError extends KclError {
  override readonly name = 'LeaseTableSchema';
  /** The item's `leaseKey` (a shard id), when one item is at fault rather than the table. */
  readonly shardId: string | undefined;
  /** The attribute at fault, when one item is at fault. */
  readonly attribute: string | undefined;
  constructor(
    readonly tableName: string,
    message: string,
    context: { shardId?: string; attribute?: string } = {},
    options?: { cause?: unknown },
  ) {
    super(`lease table ${tableName}: ${message}`, options);
    this.shardId = context.shardId;
    this.attribute = context.attribute;
  }
}

/** The lease table does not exist (deleted after it was ensured), or did not become ACTIVE in time. Retryable. */
export class LeaseTableMissingError extends KclError {
  override readonly name = 'LeaseTableMissing';
  constructor(
    readonly tableName: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`lease table ${tableName}: ${message}`, options);
  }
}

/**
 * A checkpoint was refused because the lease is no longer held by the writer at the counter it holds: another consumer
 * took the shard, or this attempt is stale. Never retried: the writer has lost the shard.
 */
export class CheckpointConflictError extends KclError {
  override readonly name = 'CheckpointConflict';
  constructor(
    readonly shardId: string,
    readonly expectedOwner: string,
    readonly expectedCounter: number,
    /** Owner in the table now; undefined when the lease has no owner or the item is gone. */
    readonly actualOwner: string | undefined,
    /** Counter in the table now; undefined when the item is gone. */
    readonly actualCounter: number | undefined,
  ) {
    const actual =
      actualCounter === undefined
        ? 'lease no longer exists'
        : actualOwner === undefined
          ? `lease has no owner at counter ${actualCounter}`
          : `lease is owned by ${actualOwner} at counter ${actualCounter}`;
    const reason =
      actualOwner === expectedOwner
        ? 'this attempt is stale (a newer attempt of the same owner moved the lease on)'
        : actualCounter === undefined || actualOwner === undefined
          ? 'this consumer no longer holds the shard'
          : 'another consumer took this shard';
    super(`shard ${shardId}: ${actual}, not by ${expectedOwner} at counter ${expectedCounter}; ${reason}`);
  }
}

/** Claiming a lease lost every race against concurrent writers of the same item. Retryable. */
export class LeaseContendedError extends KclError {
  override readonly name = 'LeaseContended';
  constructor(
    readonly shardId: string,
    readonly owner: string,
    readonly attempts: number,
  ) {
    super(`shard ${shardId}: ${owner} could not claim the lease; it changed under every one of ${attempts} attempts`);
  }
}

/**
 * A lease-table call got an argument that would write something KCL cannot read (an empty shard id or owner, a
 * checkpoint that is neither a decimal sequence number nor a sentinel, a negative or fractional sub-sequence number).
 * A bug in the caller; never retried.
 */
export class InvalidLeaseRequestError extends KclError {
  override readonly name = 'InvalidLeaseRequest';
  constructor(
    readonly shardId: string,
    message: string,
  ) {
    super(`shard ${shardId || '(empty)'}: ${message}`);
  }
}

/**
 * A processor asked to checkpoint a position outside (last checkpoint, last record delivered]: before or at what is
 * already checkpointed, or beyond what it has been given. Nothing is written.
 */
export class CheckpointOutOfRangeError extends KclError {
  override readonly name = 'CheckpointOutOfRange';
  constructor(
    readonly shardId: string,
    readonly position: string,
    readonly lastCheckpoint: string,
    readonly lastDelivered: string,
    detail?: string,
  ) {
    super(
      `shard ${shardId}: cannot checkpoint at ${position}: ${detail ?? `it must not be before the last checkpoint (${lastCheckpoint}) nor after the last record delivered (${lastDelivered})`}`,
    );
  }
}

/** Where a Temporal connection pointed, for the messages of the connection errors. */
export interface TemporalTarget {
  address: string;
  namespace: string;
  tls: boolean;
  apiKey: boolean;
}

/** Nothing answers at the Temporal address (refused, unresolvable, timed out). */
export class TemporalUnreachableError extends KclError {
  override readonly name = 'TemporalUnreachable';
  constructor(
    readonly address: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `cannot reach Temporal at ${address} (${detail}); check the address (--address, TEMPORAL_ADDRESS or the ` +
        '--profile in temporal.toml) and that the server runs and is reachable from here (locally: `temporal-kcl dev`)',
      options,
    );
  }
}

/** The TLS handshake with Temporal failed: untrusted or mismatched server certificate, client certificate refused, or TLS against a plain port. */
export class TemporalTlsError extends KclError {
  override readonly name = 'TemporalTls';
  constructor(
    readonly address: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `TLS handshake with Temporal at ${address} failed (${detail}); check the server CA (--tls-ca-path, ` +
        'TEMPORAL_TLS_SERVER_CA_CERT_PATH), the server name (--tls-server-name, TEMPORAL_TLS_SERVER_NAME), the client ' +
        'certificate and key for mTLS (--tls-cert-path/--tls-key-path, TEMPORAL_TLS_CLIENT_CERT_PATH/_KEY_PATH), and ' +
        'whether the server speaks TLS at all (TEMPORAL_TLS=false for a plain server)',
      options,
    );
  }
}

/** Temporal refused the credentials (UNAUTHENTICATED or PERMISSION_DENIED). */
export class TemporalAuthError extends KclError {
  override readonly name = 'TemporalAuth';
  constructor(
    readonly target: TemporalTarget,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `Temporal at ${target.address} refused the credentials for namespace ${target.namespace} (${detail}); ` +
        (target.apiKey
          ? 'check the API key (--api-key, TEMPORAL_API_KEY or the profile api_key): is it valid, unexpired, and allowed on this namespace?'
          : 'the server wants credentials: set an API key (--api-key, TEMPORAL_API_KEY) or a client certificate (--tls-cert-path/--tls-key-path)'),
      options,
    );
  }
}

/** The namespace does not exist on the Temporal server. */
export class NamespaceNotFoundError extends KclError {
  override readonly name = 'NamespaceNotFound';
  constructor(
    readonly target: TemporalTarget,
    options?: { cause?: unknown },
  ) {
    super(
      `namespace ${target.namespace} not found on Temporal at ${target.address}; check --namespace, TEMPORAL_NAMESPACE ` +
        `or the profile namespace, or create it: temporal operator namespace create --namespace ${target.namespace}`,
      options,
    );
  }
}

/** Custom search attributes temporal-kcl tags its workflows with are not registered on the namespace. */
export class SearchAttributesMissingError extends KclError {
  override readonly name = 'SearchAttributesMissing';
  constructor(
    readonly namespace: string,
    /** `Name=Type` pairs, e.g. `KclApplication=Keyword`. */
    readonly missing: readonly string[],
    options?: { cause?: unknown },
  ) {
    const pairs = missing.map((pair) => {
      const [name = pair, type = 'Keyword'] = pair.split('=');
      return { name, type };
    });
    const names = pairs.map((pair) => pair.name);
    // One command per attribute: the temporal CLI takes one --type per call (extra --name flags are not all registered).
    const create = pairs
      .map(
        ({ name, type }) =>
          `temporal operator search-attribute create --namespace ${namespace} --name ${name} --type ${type}`,
      )
      .join('\n  ');
    super(
      `search attribute(s) ${names.join(', ')} not registered on namespace ${namespace}; register them once with\n  ${create}\n` +
        '(Temporal Cloud: tcld namespace search-attributes add, or the Cloud UI), or start without them: --no-search-attributes',
      options,
    );
  }
}

/**
 * A lease (or vmware-go-kcl checkpoint) is held by a live worker of another consumer library: a Java KCL lease whose
 * counter moved within the failover time, or a vmware-go-kcl lease whose LeaseTimeout has not passed. Taking it would
 * make two consumers process the shard. Retryable: once that worker stops, the lease goes stale and can be taken.
 */
export class LeaseHeldByLiveWorkerError extends KclError {
  override readonly name = 'LeaseHeldByLiveWorker';
  constructor(
    readonly tableName: string,
    readonly shardId: string,
    readonly owner: string,
    detail: string,
  ) {
    super(
      `lease table ${tableName}: shard ${shardId} is held by a live worker, ${owner} (${detail}); stop that ` +
        'application first (its leases then go stale), or take the lease anyway with --force',
    );
  }
}
