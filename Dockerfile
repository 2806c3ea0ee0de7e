# slimserve: `slim serve` in a container.
#
#   docker build -t slimserve .
#   docker run -p 8080:8080 -v $PWD/models:/models:ro slimserve
#
# GPU (CUDA 12 + cuDNN 9): fetch onnxruntime-node's CUDA provider at build time and run on an
# image that has the CUDA libraries; the node binary is copied in from the Node image.
#
#   docker build -t slimserve:cuda \
#     --build-arg ONNXRUNTIME_NODE_INSTALL=cuda12 \
#     --build-arg RUNTIME_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04 .
#   docker run --gpus all -e SLIM_DEVICE=cuda -p 8080:8080 -v $PWD/models:/models:ro slimserve:cuda
#
# Without a usable GPU the server logs one warning and runs on CPU (GET /models says which).

# Node 24, the current LTS, is the target (Node 20 left maintenance in April 2026).
ARG NODE_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=${NODE_IMAGE}

FROM ${NODE_IMAGE} AS node

# ---- build: TypeScript -> dist/ (needs the dev dependencies) ---------------------------------
FROM node AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: `prepare` would run tsc before the sources are here; no native download needed to compile.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json

# ---- deps: what `slim serve` needs, with the execution provider asked for --------------------
FROM node AS deps
WORKDIR /app
# skip: the CPU (and WebGPU) binaries ship inside the npm package. cuda12: download the CUDA EP.
ARG ONNXRUNTIME_NODE_INSTALL=skip
ENV ONNXRUNTIME_NODE_INSTALL=${ONNXRUNTIME_NODE_INSTALL}
COPY package.json package-lock.json .npmrc ./
# Then drop what only `slim build` uses (the image serves; it never builds), about 500 MB:
#  - @energetic-ai (the USE-lite weights) and @stdlib (the SpamAssassin corpus and its helpers);
#  - onnxruntime-web: transformers.js bundles the part it runs, the package is never loaded;
#  - onnxruntime-node's binaries for other platforms (darwin, win32, the other Linux arch).
# test/runtime-image.test.ts checks that nothing the server imports is among them.
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts \
 && npm rebuild onnxruntime-node \
 && npm cache clean --force \
 && rm -rf node_modules/@energetic-ai node_modules/@stdlib node_modules/onnxruntime-web \
 && arch="$(node -p process.arch)" \
 && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 ! -path "*/linux/$arch" -exec rm -rf {} + \
 && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 1 -maxdepth 1 -empty -delete \
 && test -f "node_modules/onnxruntime-node/bin/napi-v6/linux/$arch/onnxruntime_binding.node"

# ---- runtime ------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=node /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
ENV NODE_ENV=production \
    SLIM_HOST=0.0.0.0 \
    SLIM_PORT=8080 \
    SLIM_MODELS=/models \
    HOME=/tmp
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
COPY bin ./bin
# A numeric user needs no passwd entry, so this works on any base image.
USER 10001:10001
EXPOSE 8080
VOLUME ["/models"]
# Ready only once every variant is loaded and warmed up, and no longer while draining on SIGTERM.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.SLIM_PORT || 8080) + '/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node as PID 1 gets SIGTERM directly: readiness off, answer what was accepted, exit.
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/serve/main.js"]
