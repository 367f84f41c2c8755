#!/usr/bin/env bash
# Start the local services the test suite talks to, when they are down (PostgreSQL, and
# the brokers the triggers are tested against: Redis, RabbitMQ, NATS with JetStream), and
# create the PostgreSQL test database (ORCHESTRATE_TEST_DB, default orchestrate_test) if
# missing.
set -uo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # name port
  for _ in $(seq 1 60); do listening "$2" && return 0; sleep 1; done
  echo "$1 is not reachable on 127.0.0.1:$2" >&2
  exit 1
}

if ! listening 6379; then
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis 6379
fi
if ! listening 5672; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached
  wait_for RabbitMQ 5672
fi
if ! listening 4222; then
  echo "starting NATS"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_for NATS 4222
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 -q || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
DB=${ORCHESTRATE_TEST_DB:-orchestrate_test}
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${DB}'" | grep -q 1; then
  echo "creating database ${DB}"
  psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE \"${DB}\"" || {
    # Another process may have created it meanwhile.
    psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${DB}'" | grep -q 1 ||
      { echo "cannot create database ${DB}" >&2; exit 1; }
  }
fi
exit 0
