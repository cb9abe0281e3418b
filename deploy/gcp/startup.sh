#!/usr/bin/env bash
# GCE startup script of every Odin VM (runs as root at each boot; idempotent): Docker Engine
# with the compose plugin from Docker's apt repository, and kernel limits for many sockets.
set -euo pipefail

if ! docker compose version >/dev/null 2>&1; then
  apt-get update
  apt-get install -y ca-certificates curl gnupg git
  install -m 0755 -d /etc/apt/keyrings
  curl -fsSL https://download.docker.com/linux/debian/gpg -o /etc/apt/keyrings/docker.asc
  chmod a+r /etc/apt/keyrings/docker.asc
  # shellcheck source=/dev/null
  . /etc/os-release
  echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian $VERSION_CODENAME stable" \
    >/etc/apt/sources.list.d/docker.list
  apt-get update
  apt-get install -y docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin
  systemctl enable --now docker
fi

# A gateway holds tens of thousands of sockets; Redpanda wants many AIO events.
cat >/etc/sysctl.d/90-odin.conf <<'SYSCTL'
fs.file-max = 2097152
fs.nr_open = 2097152
fs.aio-max-nr = 1048576
net.core.somaxconn = 65535
net.ipv4.tcp_max_syn_backlog = 65535
net.ipv4.ip_local_port_range = 10000 65535
net.core.netdev_max_backlog = 65535
SYSCTL
sysctl --system >/dev/null
mkdir -p /opt/odin-stream

# Broker VMs (create.sh with REDPANDA_INSTANCES): the persistent data disk, XFS as Redpanda
# recommends, mounted at /mnt/disks/redpanda and owned by the image's redpanda user (101).
disk=/dev/disk/by-id/google-redpanda-data
if [[ -e "$disk" ]]; then
  command -v mkfs.xfs >/dev/null 2>&1 || apt-get install -y xfsprogs
  blkid "$disk" >/dev/null 2>&1 || mkfs.xfs -f "$disk"
  mkdir -p /mnt/disks/redpanda
  grep -q ' /mnt/disks/redpanda ' /etc/fstab || echo "$disk /mnt/disks/redpanda xfs defaults,noatime,nofail 0 2" >>/etc/fstab
  mountpoint -q /mnt/disks/redpanda || mount /mnt/disks/redpanda
  mkdir -p /mnt/disks/redpanda/data
  chown 101:101 /mnt/disks/redpanda/data
fi
