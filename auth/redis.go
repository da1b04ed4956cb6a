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
// Keys carry hash tags, so it works on Redis Cluster as on a single server
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
