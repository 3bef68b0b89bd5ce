"""The state database's tables, triggers and indexes, and the schema's version."""

# 2: endpoints.owner_kind (an endpoint's owner is a container or a CNI attachment).
# 3: IPv6 (issue 15): networks.enable_ipv6/subnet6/gateway6/ip_range6/ip6_cursor,
#    endpoints.address6/prefixlen6/gateway6 (database.py migrates; COLUMNS_3 lists them).
# 4: endpoints.address/prefixlen may be NULL (IPv6-only networks, Docker 28's --ipv4=false);
#    SQLite cannot drop a NOT NULL, so database.py rebuilds the table (ENDPOINTS_TABLE).
# 5: remote_endpoints.address6: the resolver answers AAAA for other hosts' containers on a
#    dual-stack overlay network (COLUMNS_5).
# 6: remote_endpoints.address may be NULL (an IPv6-only overlay network's endpoints); the
#    table is rebuilt (REMOTE_ENDPOINTS_TABLE), as endpoints' was for schema 4.
# 7: networks.more_subnets: a family's later subnets (JSON [[subnet, gateway, ip_range], ...]),
#    on overlay networks and CNI range sets (COLUMNS_7).
SCHEMA_VERSION = 7

# The columns schema 3 added, per table: what the migration adds to an older database.
COLUMNS_3 = {
    "networks": (
        ("enable_ipv6", "INTEGER NOT NULL DEFAULT 0"),
        ("subnet6", "TEXT"),
        ("gateway6", "TEXT"),
        ("ip_range6", "TEXT"),
        ("ip6_cursor", "TEXT"),
    ),
    "endpoints": (
        ("address6", "TEXT"),
        ("prefixlen6", "INTEGER"),
        ("gateway6", "TEXT"),
    ),
}
# The column schema 5 added: the copy of other hosts' endpoints is rebuilt at every resync,
# so an added column that starts empty is all an older database needs.
COLUMNS_5: dict[str, tuple[tuple[str, str], ...]] = {"remote_endpoints": (("address6", "TEXT"),)}
COLUMNS_7: dict[str, tuple[tuple[str, str], ...]] = {
    "networks": (("more_subnets", "TEXT NOT NULL DEFAULT '[]'"),)
}
ENDPOINTS_TABLE = """
-- container_id is the owner's key: a container's id, or a CNI attachment's
-- owner key when owner_kind is 'cni' (the ports' container_id likewise).
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    container_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    ifname TEXT NOT NULL,
    -- NULL on an IPv6-only network (schema 4; NULLs are distinct, so UNIQUE holds).
    address INTEGER,
    prefixlen INTEGER,
    gateway TEXT,
    mac TEXT NOT NULL,
    host_ifname TEXT NOT NULL UNIQUE,
    aliases TEXT NOT NULL DEFAULT '[]',
    -- 'active', or 'releasing': the container is gone, the kernel side not yet.
    state TEXT NOT NULL DEFAULT 'active',
    -- 'container' or 'cni' (model.OwnerKind); added by schema 2 (database.py migrates).
    owner_kind TEXT NOT NULL DEFAULT 'container',
    -- The IPv6 address (compressed text, one spelling per address) on a network with IPv6.
    address6 TEXT,
    prefixlen6 INTEGER,
    gateway6 TEXT,
    UNIQUE (network_id, address)
);
"""
REMOTE_ENDPOINTS_TABLE = """
-- Other hosts' endpoints on overlay networks, copied from the cluster's watch
-- (remote_endpoints.py): what the resolver answers for names on other hosts.
CREATE TABLE IF NOT EXISTS remote_endpoints (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL,
    -- NULL on an IPv6-only overlay network (schema 6).
    address INTEGER,
    names TEXT NOT NULL DEFAULT '[]',
    address6 TEXT
);
"""
_OTHER_TABLES = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    subnet TEXT,
    gateway TEXT,
    ip_range TEXT,
    bridge TEXT,
    internal INTEGER NOT NULL DEFAULT 0,
    icc INTEGER NOT NULL DEFAULT 1,
    masquerade INTEGER NOT NULL DEFAULT 1,
    mtu INTEGER NOT NULL DEFAULT 1500,
    host_binding TEXT,
    options TEXT NOT NULL DEFAULT '[]',
    labels TEXT NOT NULL DEFAULT '[]',
    aux TEXT NOT NULL DEFAULT '[]',
    created TEXT NOT NULL,
    ip_cursor INTEGER,
    enable_ipv6 INTEGER NOT NULL DEFAULT 0,
    subnet6 TEXT,
    gateway6 TEXT,
    ip_range6 TEXT,
    -- The last IPv6 address given (text: an IPv6 address does not fit SQLite's integers).
    ip6_cursor TEXT,
    -- A family's later subnets (schema 7): [[subnet, gateway or null, ip_range or null], ...].
    more_subnets TEXT NOT NULL DEFAULT '[]'
);
CREATE UNIQUE INDEX IF NOT EXISTS networks_bridge ON networks(bridge) WHERE bridge != '';
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    pid_start INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    started_at TEXT NOT NULL DEFAULT '',
    finished_at TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    netns_owner TEXT NOT NULL DEFAULT ''
);
-- A container's restart bookkeeping (--restart): kept apart from its row so that
-- databases from before have it without a migration; absent means none.
CREATE TABLE IF NOT EXISTS container_restarts (
    container_id TEXT PRIMARY KEY,
    count INTEGER NOT NULL DEFAULT 0,
    manually_stopped INTEGER NOT NULL DEFAULT 0
);
-- An IPv6 address is leased once per network, as an IPv4 one (NULLs are distinct).
CREATE UNIQUE INDEX IF NOT EXISTS endpoints_address6 ON endpoints(network_id, address6);
CREATE INDEX IF NOT EXISTS endpoints_container ON endpoints(container_id);
-- The engine's check looks for endpoints left 'releasing' with every request.
CREATE INDEX IF NOT EXISTS endpoints_state ON endpoints(state);
-- Endpoints per network (every state), kept by the two triggers: a lease checks
-- its network's count, and COUNT(*) would read the network's whole index each
-- time, pushing the pages the lease needs out of the cache (bench/networks.py).
CREATE TABLE IF NOT EXISTS endpoint_counts (
    network_id TEXT PRIMARY KEY,
    n INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS endpoints_counted AFTER INSERT ON endpoints BEGIN
    INSERT INTO endpoint_counts(network_id, n) VALUES (NEW.network_id, 1)
        ON CONFLICT(network_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS endpoints_uncounted AFTER DELETE ON endpoints BEGIN
    UPDATE endpoint_counts SET n = n - 1 WHERE network_id = OLD.network_id;
    DELETE FROM endpoint_counts WHERE network_id = OLD.network_id AND n <= 0;
END;
CREATE TABLE IF NOT EXISTS ports (
    container_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    host_ip TEXT NOT NULL,  -- '' for every address
    host_port INTEGER NOT NULL,
    proto TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    PRIMARY KEY (host_ip, host_port, proto)
);
CREATE INDEX IF NOT EXISTS ports_container ON ports(container_id);
-- Who holds a host port, whatever the address: asked for each port a start chooses.
CREATE INDEX IF NOT EXISTS ports_host_port ON ports(host_port, proto);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Operations under way: written with the operation's first records, deleted
-- with its last. One left behind means the daemon died in the middle, and
-- gc finishes or undoes that operation.
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    subject TEXT NOT NULL,
    created TEXT NOT NULL
);
-- CNI attachments (attachments.py): one per (network, CNI_CONTAINERID, CNI_IFNAME).
-- Their endpoints and ports are recorded under `owner` (endpoints.container_id,
-- with endpoints.owner_kind 'cni').
-- state 'adding' until the kernel work is done: one left after a crash is undone.
CREATE TABLE IF NOT EXISTS attachments (
    owner TEXT PRIMARY KEY,
    network_id TEXT NOT NULL,
    network TEXT NOT NULL,
    container_id TEXT NOT NULL,
    ifname TEXT NOT NULL,
    netns TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'adding',
    created TEXT NOT NULL,
    UNIQUE (network, container_id, ifname)
);
-- Docker's IPAM plugin (engine/docker_plugin.py): the pools dockerd asked for
-- (RequestPool), and the addresses given in them (RequestAddress).
CREATE TABLE IF NOT EXISTS docker_pools (
    id TEXT PRIMARY KEY,
    subnet TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS docker_pool_addresses (
    pool_id TEXT NOT NULL,
    address TEXT NOT NULL,
    PRIMARY KEY (pool_id, address)
);
-- Images (images.py). An image is its config, byte for byte (its sha256 is the
-- id), the manifest it came with, and its layers bottom first; the blobs and
-- the extracted layer directories are files under $ROOT/images, kept while a
-- row here names them. Added to a database of before images by this script
-- itself (CREATE ... IF NOT EXISTS): they start empty.
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    config BLOB NOT NULL,
    manifest BLOB NOT NULL,
    manifest_media_type TEXT NOT NULL,
    added TEXT NOT NULL,
    last_tagged TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    diff_id TEXT NOT NULL,
    blob_digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (image_id, position)
);
CREATE INDEX IF NOT EXISTS image_layers_diff ON image_layers(diff_id);
CREATE INDEX IF NOT EXISTS image_layers_blob ON image_layers(blob_digest);
-- Names: a tag (docker.io/library/busybox:latest) or a repository digest
-- (docker.io/library/busybox@sha256:...), each naming one image.
CREATE TABLE IF NOT EXISTS image_names (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    kind TEXT NOT NULL,  -- 'tag' or 'digest'
    added TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS image_names_image ON image_names(image_id);
CREATE INDEX IF NOT EXISTS remote_endpoints_network ON remote_endpoints(network_id);
"""
SCHEMA = ENDPOINTS_TABLE + REMOTE_ENDPOINTS_TABLE + _OTHER_TABLES
