#!/usr/bin/env bash
# Installs Apache Kafka (the broker and its command-line tools) from Maven Central into a
# cache outside the clone, so fresh clones and CI runs on one machine share it:
#   ~/.cache/odin-stream/kafka-<version>/libs/*.jar   the classpath
#   ~/.cache/odin-stream/kafka-<version>/config/log4j2.properties   quiet logging
# Idempotent, safe when two scripts call it at once (flock), instant once installed.
# Prints the install folder on its last line of stdout.
set -euo pipefail

# The one place the version is pinned: the newest 4.x on Maven Central whose jars are built
# for Java 17 (class file version 61), which is the machine's Java.
KAFKA_VERSION="4.4.0"
# Kafka logs through SLF4J 1.7; the Apache distribution ships this binding to its log4j 2.
LOG4J_VERSION="2.25.5"

CACHE_DIR="${ODIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/odin-stream}"
HOME_DIR="$CACHE_DIR/kafka-$KAFKA_VERSION"

if [[ -f "$HOME_DIR/.installed" ]]; then echo "$HOME_DIR"; exit 0; fi

need_java() {
  if ! command -v java >/dev/null 2>&1; then
    echo "install-kafka.sh: Java 17 or newer is required and 'java' is not on PATH; install Debian's openjdk-17-jre-headless (apt-get install openjdk-17-jre-headless)" >&2
    exit 1
  fi
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/{print $2}')
  if [[ -z "$v" || "${v%%.*}" -lt 17 ]]; then
    echo "install-kafka.sh: Java 17 or newer is required, found '${v:-unknown}'; install Debian's openjdk-17-jre-headless (apt-get install openjdk-17-jre-headless)" >&2
    exit 1
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    echo "install-kafka.sh: Maven is required to fetch Kafka's jars from Maven Central; install Debian's maven (apt-get install maven)" >&2
    exit 1
  fi
}
need_java

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.install-kafka.lock"
flock 9
if [[ -f "$HOME_DIR/.installed" ]]; then echo "$HOME_DIR"; exit 0; fi

echo "installing Apache Kafka $KAFKA_VERSION from Maven Central into $HOME_DIR ..." >&2
work="$(mktemp -d "$CACHE_DIR/.kafka-install.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>odin-stream</groupId>
  <artifactId>kafka-install</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
mvn -B -q -f "$work/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$work/home/libs" >&2

mkdir -p "$work/home/config"
cat >"$work/home/config/log4j2.properties" <<'LOG'
# Quiet: warnings and errors only, plus the line that says a server started.
status = error
appender.out.type = Console
appender.out.name = OUT
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${sys:kafka.log.level:-WARN}
rootLogger.appenderRef.out.ref = OUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
logger.metadata.name = org.apache.kafka.metadata
logger.metadata.level = ERROR
LOG
# The command-line tools log to stderr, so that what they print on stdout stays parseable.
sed -e 's/SYSTEM_OUT/SYSTEM_ERR/' -e '/^logger\.started/d' \
  "$work/home/config/log4j2.properties" >"$work/home/config/tools-log4j2.properties"
echo "$KAFKA_VERSION" >"$work/home/VERSION"
touch "$work/home/.installed"
rm -rf "$HOME_DIR"
mv "$work/home" "$HOME_DIR"
echo "installed Apache Kafka $KAFKA_VERSION ($(ls "$HOME_DIR/libs" | wc -l) jars)" >&2
echo "$HOME_DIR"
