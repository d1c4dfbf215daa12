#!/usr/bin/python3
"""Build an evbridge config from evbridge-sim's start-up JSON line.

One source per simulated account, named after the account, with the
account's base URL and credentials (and webhook secrets when --webhooks).

  sim_config.py --sim-line FILE --brokers ADDR [--interval 1s] [...] > cfg

With --oauth KEYFILE, Kommo sources authenticate with OAuth 2.0 (client,
initial refresh token) instead of the long-lived token.
"""
import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim-line", required=True,
                    help="file whose first line is the sim's start-up JSON")
    ap.add_argument("--brokers", default=None,
                    help="bootstrap servers (omit: embedded)")
    ap.add_argument("--interval", default="1s")
    ap.add_argument("--start", default="30d")
    ap.add_argument("--timeout", default="3s")
    ap.add_argument("--prefix", default="crm")
    ap.add_argument("--listen", default=None)
    ap.add_argument("--webhooks", action="store_true")
    ap.add_argument("--delivery", default=None)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--rps", type=float, default=None,
                    help="rate_limit.rps of every source")
    ap.add_argument("--only", default=None,
                    help="comma-separated providers to include")
    ap.add_argument("--oauth", default=None, metavar="KEYFILE",
                    help="Kommo sources use OAuth (the account's client and "
                         "initial refresh token) with token_key from KEYFILE")
    ap.add_argument("--kafka-prop", action="append", default=[],
                    help="KEY=VALUE for kafka.properties")
    a = ap.parse_args()

    with open(a.sim_line) as f:
        info = json.loads(f.readline())
    only = set(a.only.split(",")) if a.only else None
    sources = []
    for acct in info["accounts"]:
        if only and acct["provider"] not in only:
            continue
        src = {
            "name": acct["account"],
            "provider": acct["provider"],
            "base_url": acct["base_url"],
            "credentials": acct["credentials"],
            "poll": {"interval": a.interval, "start": a.start},
            "http": {"timeout": a.timeout, "connect_timeout": "1s"},
        }
        if a.oauth and acct["provider"] == "kommo":
            o = acct["oauth"]
            src["credentials"] = {
                "client_id": o["client_id"],
                "client_secret": o["client_secret"],
                "redirect_uri": o["redirect_uri"],
                "refresh_token": o["refresh_token"],
                "token_key": "${file:%s}" % a.oauth,
            }
        if a.rps:
            # A simulated account, not a real one: the documented
            # per-account limits (Kommo's 7 a second) do not apply.
            src["rate_limit"] = {"rps": a.rps, "burst": 1,
                                 "above_documented": True}
        if a.webhooks:
            wh = acct.get("webhook") or {}
            if acct["provider"] == "kommo":
                src["webhook"] = {"token": wh["token"]}
            else:
                src["webhook"] = {"secret": wh["secret"]}
        sources.append(src)
    kafka = {"topic_prefix": a.prefix}
    # On a shared cluster (EB_TEST_BROKERS) each test gets topics, state
    # topics and a transactional.id of its own.
    ns = os.environ.get("EB_TEST_NS")
    if ns:
        kafka["topic_prefix"] = "%s-%s" % (a.prefix, ns)
        kafka["state_prefix"] = "evbridge-%s" % ns
    if a.brokers:
        kafka["brokers"] = a.brokers
    if a.delivery:
        kafka["delivery"] = a.delivery
    props = {}
    for kv in a.kafka_prop:
        k, v = kv.split("=", 1)
        props[k] = v
    if props:
        kafka["properties"] = props
    cfg = {
        "kafka": kafka,
        "http": {"listen": a.listen},
        "log": {"level": a.log_level},
        "shutdown": {"drain_timeout": "10s"},
        "sources": sources,
    }
    json.dump(cfg, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
