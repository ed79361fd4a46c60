# One stage: install, compile to dist/, drop the dev dependencies. The server runs as `node`, directly
# (no npm or shell between the container runtime and the process, so SIGTERM reaches it), and keeps
# everything (keys, sessions, the embedded PostgreSQL) in the /data volume. The WhatsApp sandbox
# (packages/sandbox, an npm workspace for tests and local runs) is left out by .dockerignore: npm ci installs
# the root's dependencies without it, and the image holds none of its code.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev --no-audit --no-fund \
  && mkdir -p /data && chown node:node /data && chmod 700 /data
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 DATA_DIR=/data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s CMD node -e "fetch('http://127.0.0.1:8080/health').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"
STOPSIGNAL SIGTERM
# The heap flag is npm start's (package.json): a young generation of 2 × 4 MB instead of V8's 2 × 16 MB.
CMD ["node", "--max-semi-space-size=4", "dist/src/main.js"]
