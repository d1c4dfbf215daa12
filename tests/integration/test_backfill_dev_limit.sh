#!/usr/bin/env bash
# A backfill (Kommo and Close, 20,000 events each, as the dev overlay's
# two sources) with the settings of deploy/k8s/overlays/dev (its
# dedupe.capacity and the rest of its evbridge.json memory settings) stays
# under that overlay's memory limit (resources.limits.memory), and arrives
# exactly once: see test_backfill_memory.sh.
cd "$(dirname "$0")/../.." || exit 1
EB_BACKFILL_OVERLAY=dev EB_BACKFILL_PROVIDERS=${EB_BACKFILL_PROVIDERS:-kommo,close} \
  exec tests/integration/test_backfill_memory.sh
