#!/bin/sh
# ctest fixture for the integration tests: start or stop the throw-away
# broker with ops/kafka.sh, or do nothing when KINFER_TEST_BROKERS names a
# broker to use instead.
#   kafka_fixture.sh start|stop PATH/TO/ops/kafka.sh DIR
set -eu
[ $# -eq 3 ] || { echo "usage: $0 start|stop KAFKA_SH DIR" >&2; exit 2; }
action=$1 kafka_sh=$2 dir=$3
if [ -n "${KINFER_TEST_BROKERS:-}" ]; then
    echo "using KINFER_TEST_BROKERS=$KINFER_TEST_BROKERS; no $action"
    exit 0
fi
case $action in
start|stop) exec "$kafka_sh" "$action" --dir "$dir" ;;
*) echo "$0: unknown action $action" >&2; exit 2 ;;
esac
