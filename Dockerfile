# temporal-kcl: the `temporal-kcl` command (worker, start, status, stop) in a small Node image.
#
#   docker build -t temporal-kcl .
#   docker run --rm temporal-kcl                      # prints `temporal-kcl worker --help`
#   docker run --rm temporal-kcl temporal-kcl --help
#
# docker-compose.yml builds this image for its `worker` service.

# --- build: compile TypeScript to dist/, then drop the dev dependencies -------------------------------------------
FROM node:20-bookworm-slim AS build
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
FROM node:20-bookworm-slim
ENV NODE_ENV=production
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

# The worker's Prometheus endpoint when TEMPORAL_KCL_METRICS_PORT=9464.
EXPOSE 9464

CMD ["temporal-kcl", "worker", "--help"]
