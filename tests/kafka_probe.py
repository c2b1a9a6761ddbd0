"""An independent Kafka client for the tests (confluent-kafka, its own librdkafka build).

Reads the same librdkafka property file Landfall takes with --kafka-config-file and kcat with -F:

  kafka_probe.py FILE count TOPIC
      prints the number of records a read_committed reader sees in TOPIC, as JSON
  kafka_probe.py FILE offsets-for-times TOPIC TIMESTAMP_MS
      prints {partition: offset} of the first record at or after TIMESTAMP_MS, as JSON
"""

import json
import sys

from confluent_kafka import Consumer, TopicPartition


def properties(path):
    conf = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                conf[key.strip()] = value.strip()
    return conf


def consumer(path, **extra):
    conf = properties(path)
    conf.update({"group.id": "kafka-probe", "enable.auto.commit": False,
                 "isolation.level": "read_committed", "enable.partition.eof": True,
                 "auto.offset.reset": "earliest"})
    conf.update(extra)
    return Consumer(conf)


def partitions(c, topic):
    md = c.list_topics(topic, timeout=20)
    return sorted(md.topics[topic].partitions)


def count(path, topic):
    c = consumer(path)
    parts = partitions(c, topic)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    done, n = set(), 0
    while len(done) < len(parts):
        m = c.poll(10)
        if m is None:
            raise SystemExit("no message or end of partition within 10 s")
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                done.add(m.partition())
                continue
            raise SystemExit(str(m.error()))
        n += 1
    c.close()
    return n


def offsets_for_times(path, topic, ts_ms):
    c = consumer(path)
    parts = partitions(c, topic)
    found = c.offsets_for_times([TopicPartition(topic, p, ts_ms) for p in parts], timeout=20)
    c.close()
    return {str(tp.partition): tp.offset for tp in found}


if __name__ == "__main__":
    path, mode, topic = sys.argv[1:4]
    if mode == "count":
        print(json.dumps(count(path, topic)))
    elif mode == "offsets-for-times":
        print(json.dumps(offsets_for_times(path, topic, int(sys.argv[4]))))
    else:
        raise SystemExit(f"unknown mode {mode}")
