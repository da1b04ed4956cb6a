// Package redisurl turns the Redis URLs of sipfed's flags and config
// (single server, TLS, Sentinel, Cluster) into a go-redis client, shared by
// the location store (RFC 3261 §10) and the credential store. go-redis' own
// URL parsers do the parsing; this package adds only what they lack: host
// lists, the Sentinel master name as the path, and stricter checks.
package redisurl
