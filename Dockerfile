# temporal-kcl: the `temporal-kcl` command (worker, start, status, stop) in a small Node image.
#
#   docker build -t temporal-kcl .
#   docker run --rm temporal-kcl                      # prints `temporal-kcl worker --help`
#   docker run --rm temporal-kcl temporal-kcl --help
#
# docker-compose.yml builds this image for its `worker` service; deploy/kubernetes/worker.yaml runs it.
#
# Your processor in an image of your own (JavaScript, or TypeScript through tsx, which the image includes):
#
#   FROM temporal-kcl:0.1.0
#   COPY --chown=node:node my-processor.js /app/processor/my-processor.js
#   CMD ["temporal-kcl", "worker", "--processor", "/app/processor/my-processor.js"]
#
# A processor with npm dependencies of its own: COPY its package.json and package-lock.json to /app/processor too and
# `RUN npm ci --omit=dev` there (as root, before switching back to USER node).

# --- build: compile TypeScript to dist/, then drop the dev dependencies -------------------------------------------
FROM node:26-trixie-slim AS build
WORKDIR /app

# Dependencies first, so that editing the source does not invalidate the `npm ci` layer. The native modules in the
# tree (Temporal's core bridge, leveldown, classic-level) ship prebuilt binaries for linux x64/arm64 glibc.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# `npm run build` also bundles the workflow code into dist/workflow-bundle.js, so workers start without webpack.
COPY scripts/bundle-workflows.ts ./scripts/bundle-workflows.ts
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# --- runtime -------------------------------------------------------------------------------------------------------
# Node 26: the active LTS line (December 2026).
FROM node:26-trixie-slim
ENV NODE_ENV=production
# `temporal-kcl worker` serves /healthz and /readyz on this port (the HEALTHCHECK below, Kubernetes probes).
ENV TEMPORAL_KCL_HEALTH_PORT=9465
WORKDIR /app

# Owned by root and only readable by the `node` user: the worker has no reason to modify its own code.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist

# package.json's bin, without npm link: dist/cli/main.js starts with `#!/usr/bin/env node`; node resolves the symlink,
# so the CLI finds /app/node_modules.
RUN chmod +x /app/dist/cli/main.js \
  && ln -s /app/dist/cli/main.js /usr/local/bin/temporal-kcl

USER node

# The worker's Prometheus endpoint when TEMPORAL_KCL_METRICS_PORT=9464, and its health endpoints.
EXPOSE 9464 9465

# Healthy while the worker polls its task queues (/readyz); not during start-up or a graceful shutdown.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.TEMPORAL_KCL_HEALTH_PORT || 9465) + '/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

CMD ["temporal-kcl", "worker", "--help"]
