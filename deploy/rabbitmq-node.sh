#!/bin/sh
# Entry point of each node of docker-compose.cluster.yml (mounted read-only, run by /bin/sh).
#
# 1. Writes the shared Erlang cookie (ERLANG_COOKIE) owner-only before the node boots; the
#    image's own entrypoint then hands it to the rabbitmq user.
# 2. On its very first boot (an empty data volume), a node other than the seed (SEED_NODE)
#    waits until the seed answers, so that peer discovery finds a cluster to join instead of two
#    fresh nodes each founding their own. The wait is bounded (SEED_WAIT seconds):
#    a node replacing a lost one still boots and joins whichever node answers.
# 3. Every later boot starts at once. No node ever waits for another's health, so compose can
#    start all three together in any order, and each finds the peers it needs booting beside
#    it, whichever node stopped first (RabbitMQ 3.x waits for the node that stopped last,
#    4.x for a majority).
set -eu

data="${RABBITMQ_DATA_DIR:-/var/lib/rabbitmq}"  # the official image sets it
(umask 077 && printf '%s' "$ERLANG_COOKIE" > "$data/.erlang.cookie")

seed="${SEED_NODE:-}"
self="$(hostname)"
if [ -n "$seed" ] && [ "$seed" != "$self" ] && [ ! -d "$data/mnesia/rabbit@$self" ]; then
    limit="${SEED_WAIT:-300}"
    # A deadline on the clock: one check of a seed whose name does not resolve yet can take
    # most of a minute by itself, so counting sleeps would not bound the wait.
    deadline=$(($(date +%s) + limit))
    echo "rabbitmq-node: first boot of rabbit@$self: waiting for the seed rabbit@$seed to answer"
    until HOME="$data" rabbitmq-diagnostics -q -t 10 -n "rabbit@$seed" check_running \
        >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "rabbitmq-node: rabbit@$seed did not answer within ${limit}s; booting anyway"
            break
        fi
        sleep 2
    done
fi

exec docker-entrypoint.sh rabbitmq-server
