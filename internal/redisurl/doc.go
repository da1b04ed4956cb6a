// Package redisurl turns the Redis URLs of sipfed's flags and config
// (single server, TLS, Sentinel, Cluster) into a go-redis UniversalClient,
// shared by the location store (RFC 3261 §10) and the credential store.
package redisurl
