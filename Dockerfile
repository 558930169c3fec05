# Worker images, built from the repo. Two targets:
#   cpu: the CPU pool (workflows, features, datasets, batch inference, serving);
#        TensorFlow.js on tfjs-node when libtensorflow installs, else WASM.
#   gpu: the GPU pool (training). tfjs-node-gpu needs the CUDA 11.8 / cuDNN 8 runtime
#        in the image; without it the worker uses the WebGPU backend over the NVIDIA
#        Vulkan driver that the NVIDIA container toolkit mounts in (see
#        NVIDIA_DRIVER_CAPABILITIES below). The worker logs which backend it loaded.
FROM node:20-bookworm-slim AS base
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
# Everything but what .dockerignore leaves out (tests, benchmarks, local data, .git).
COPY . .
RUN useradd --system --uid 10001 fti && chown -R fti /app
USER fti
# Images are production: a model version is registered only with a code version
# (activities/code-version.ts). There is no .git in here to ask, so the build passes
# it as the build argument FTI_CODE_VERSION (set last in each target, so a new value
# rebuilds no earlier layer):
#   FTI_CODE_VERSION=$(git rev-parse HEAD) docker compose build
#   docker build --build-arg FTI_CODE_VERSION=$(git rev-parse HEAD) --target cpu .
ENV FTI_ENV=production
# Bounds each worker's V8 heap (FTI_WORKER_HEAP_MB does this for workers fti starts itself).
ENV NODE_OPTIONS=--max-old-space-size=768

FROM base AS cpu
ARG FTI_CODE_VERSION=
ENV FTI_CODE_VERSION=${FTI_CODE_VERSION}
CMD ["node", "--import", "tsx", "workers/cpu.ts"]

FROM base AS gpu
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers \
 && rm -rf /var/lib/apt/lists/*
USER fti
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
ARG FTI_CODE_VERSION=
ENV FTI_CODE_VERSION=${FTI_CODE_VERSION}
CMD ["node", "--import", "tsx", "workers/gpu.ts"]
