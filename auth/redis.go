package auth

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// RedisStore keeps users in Redis, for domains served by several nodes:
//
//	sipfed:user:{alice@a.example}  hash: md5 → HA1, sha-256 → HA1
//	sipfed:users:{a.example}       set of the domain's AORs, for List
//	sipfed:domains                 set of domains with users, for List
//	sipfed:nonce-secret            the nonce secret every node shares (SharedSecret)
//
// Import writes many users in pipelines, with the same keys. Keys carry
// hash tags, so it works on Redis Cluster as on a single server
// or Sentinel; no request uses SCAN or KEYS. Errors reaching Redis wrap
// ErrUnavailable.
type RedisStore struct {
	c goredis.UniversalClient
}

var _ CredentialStore = (*RedisStore)(nil)

// NewRedisStore returns a store on client.
func NewRedisStore(client goredis.UniversalClient) *RedisStore {
	return &RedisStore{c: client}
}

func userKey(aor string) string      { return "sipfed:user:{" + aor + "}" }
func domainKey(domain string) string { return "sipfed:users:{" + domain + "}" }

const (
	domainsKey = "sipfed:domains"
	secretKey  = "sipfed:nonce-secret"
)

// SharedSecret returns the nonce secret kept in Redis for every node of
// a domain, storing fresh as the secret when there is none yet (the first
// node to start sets it). Errors wrap ErrUnavailable.
func SharedSecret(ctx context.Context, client goredis.UniversalClient, fresh []byte) ([]byte, error) {
	if err := client.SetNX(ctx, secretKey, fresh, 0).Err(); err != nil {
		return nil, redisErr("nonce secret", err)
	}
	v, err := client.Get(ctx, secretKey).Bytes()
	if err != nil {
		return nil, redisErr("nonce secret", err)
	}
	return v, nil
}

// Lookup returns the credential of user@realm, or ErrUnknownUser.
func (s *RedisStore) Lookup(ctx context.Context, user, realm string) (Credential, error) {
	vals, err := s.c.HMGet(ctx, userKey(user+"@"+realm), "md5", "sha-256").Result()
	if err != nil {
		return Credential{}, redisErr("lookup", err)
	}
	c := Credential{User: user, Realm: realm}
	c.HA1MD5, _ = vals[0].(string)
	c.HA1SHA256, _ = vals[1].(string)
	if c.HA1MD5 == "" && c.HA1SHA256 == "" {
		return Credential{}, ErrUnknownUser
	}
	return c, nil
}

// Add sets the password of aor (user@domain), adding the user if needed.
// Only the HA1 hashes are written.
func (s *RedisStore) Add(ctx context.Context, aor, password string) error {
	user, domain, err := ParseAOR(aor)
	if err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	c := NewCredential(user, domain, password)
	aor = user + "@" + domain
	// Not a MULTI: the keys live in different cluster slots. The hash
	// goes first, so a user listed always exists.
	if err := s.c.HSet(ctx, userKey(aor), "md5", c.HA1MD5, "sha-256", c.HA1SHA256).Err(); err != nil {
		return redisErr("add", err)
	}
	if err := s.c.SAdd(ctx, domainKey(domain), aor).Err(); err != nil {
		return redisErr("add", err)
	}
	if err := s.c.SAdd(ctx, domainsKey, domain).Err(); err != nil {
		return redisErr("add", err)
	}
	return nil
}

// importBatch is how many users Import sends per pipeline.
const importBatch = 1000

// Import adds or updates the users of creds, each of which must be as
// ParseAOR returns it with its HA1s in lower-case hex, with the keys Add
// writes, in pipelines of importBatch users: each user's hash, then the
// domain sets. A user's hashes are replaced whole: a credential without
// HA1SHA256 leaves the user with MD5 alone. When an AOR is in creds more
// than once, the last wins (and the counts are off by the repeats).
// Nothing is written when a credential is invalid; a failure part way
// leaves the batches before it written, and Import may simply be run
// again.
func (s *RedisStore) Import(ctx context.Context, creds []Credential) (ImportStats, error) {
	var st ImportStats
	for i := range creds {
		if err := creds[i].check(); err != nil {
			return st, fmt.Errorf("auth: import %d: %w", i+1, err)
		}
	}
	domains := map[string]bool{}
	members := map[string][]any{}
	for len(creds) > 0 {
		batch := creds[:min(importBatch, len(creds))]
		creds = creds[len(batch):]
		// The hashes first, as Add does, so that a user listed exists.
		_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, c := range batch {
				key := userKey(c.User + "@" + c.Realm)
				switch {
				case c.HA1MD5 == "":
					p.HSet(ctx, key, "sha-256", c.HA1SHA256)
					p.HDel(ctx, key, "md5")
				case c.HA1SHA256 == "":
					p.HSet(ctx, key, "md5", c.HA1MD5)
					p.HDel(ctx, key, "sha-256")
				default:
					p.HSet(ctx, key, "md5", c.HA1MD5, "sha-256", c.HA1SHA256)
				}
			}
			return nil
		})
		if err != nil {
			return st, redisErr("import", err)
		}
		clear(members)
		for _, c := range batch {
			members[c.Realm] = append(members[c.Realm], c.User+"@"+c.Realm)
		}
		var added []*goredis.IntCmd
		_, err = s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for d, m := range members {
				added = append(added, p.SAdd(ctx, domainKey(d), m...))
				if !domains[d] {
					p.SAdd(ctx, domainsKey, d)
				}
			}
			return nil
		})
		if err != nil {
			return st, redisErr("import", err)
		}
		for d := range members {
			domains[d] = true
		}
		n := 0
		for _, a := range added {
			n += int(a.Val())
		}
		st.Added += n
		st.Updated += len(batch) - n
	}
	return st, nil
}

// Del removes aor, or returns ErrUnknownUser.
func (s *RedisStore) Del(ctx context.Context, aor string) error {
	user, domain, err := ParseAOR(aor)
	if err != nil {
		return err
	}
	aor = user + "@" + domain
	n, err := s.c.Del(ctx, userKey(aor)).Result()
	if err != nil {
		return redisErr("del", err)
	}
	if err := s.c.SRem(ctx, domainKey(domain), aor).Err(); err != nil {
		return redisErr("del", err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", aor, ErrUnknownUser)
	}
	return nil
}

// List returns the AORs of domain, or of every domain when domain is
// empty, sorted.
func (s *RedisStore) List(ctx context.Context, domain string) ([]string, error) {
	domains := []string{strings.ToLower(domain)}
	if domain == "" {
		var err error
		if domains, err = s.c.SMembers(ctx, domainsKey).Result(); err != nil {
			return nil, redisErr("list", err)
		}
	}
	var aors []string
	for _, d := range domains {
		m, err := s.c.SMembers(ctx, domainKey(d)).Result()
		if err != nil {
			return nil, redisErr("list", err)
		}
		aors = append(aors, m...)
	}
	sort.Strings(aors)
	return aors, nil
}

// redisErr wraps err; failures to reach a working Redis also wrap
// ErrUnavailable.
func redisErr(op string, err error) error {
	var reply goredis.Error
	if errors.As(err, &reply) && !(goredis.IsLoadingError(err) || goredis.IsClusterDownError(err) ||
		goredis.IsTryAgainError(err) || goredis.IsMasterDownError(err) || goredis.IsMaxClientsError(err) ||
		goredis.IsReadOnlyError(err)) {
		return fmt.Errorf("auth: redis %s: %w", op, err)
	}
	return fmt.Errorf("auth: redis %s: %w: %w", op, ErrUnavailable, err)
}
