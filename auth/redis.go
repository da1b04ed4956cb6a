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
//	sipfed:domains                 set of domains with users, for List and ListAliases
//	sipfed:aliases:{a.example}     hash of the domain's aliases: 1001 → alice (AliasResolver)
//	sipfed:nonce-secret            the nonce secret every node shares (SharedSecret)
//
// Import writes many users in pipelines, with the same keys. Keys carry
// hash tags, so it works on Redis Cluster as on a single server
// or Sentinel; no request uses SCAN or KEYS. Errors reaching Redis wrap
// ErrUnavailable.
//
// The keys of a user and of its domain's aliases live in different
// cluster slots, so the checks that keep a name from being both a user
// and an alias are not atomic with the writes: a user added while the
// same name is made an alias may end up both (Lookup and the proxy find
// the user first), and an alias added while its user is deleted may
// outlive the user (calls to it get 404). "sipfed user alias list" shows
// either, and "sipfed user alias del" mends it.
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
func aliasKey(domain string) string  { return "sipfed:aliases:{" + domain + "}" }

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
// Only the HA1 hashes are written. An aor that is an alias is an error
// wrapping ErrAliasConflict.
func (s *RedisStore) Add(ctx context.Context, aor, password string) error {
	user, domain, err := ParseAOR(aor)
	if err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	switch target, err := s.c.HGet(ctx, aliasKey(domain), user).Result(); {
	case err == nil:
		return errIsAlias(user, domain, target)
	case !errors.Is(err, goredis.Nil):
		return redisErr("add", err)
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
// Nothing is written when a credential is invalid, or is an alias (an
// error wrapping ErrAliasConflict; checked first, in pipelines, for the
// domains that have aliases); a failure part way leaves the batches
// before it written, and Import may simply be run again.
func (s *RedisStore) Import(ctx context.Context, creds []Credential) (ImportStats, error) {
	var st ImportStats
	for i := range creds {
		if err := creds[i].check(); err != nil {
			return st, fmt.Errorf("auth: import %d: %w", i+1, err)
		}
	}
	if err := s.checkNotAliases(ctx, creds); err != nil {
		return st, err
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

// checkNotAliases returns an error wrapping ErrAliasConflict when a user
// of creds is an alias. One round trip finds the domains with aliases;
// the users of those domains are then looked up in pipelines of
// importBatch.
func (s *RedisStore) checkNotAliases(ctx context.Context, creds []Credential) error {
	var domains []string
	seen := map[string]bool{}
	last := ""
	for _, c := range creds {
		if c.Realm != last && !seen[c.Realm] {
			seen[c.Realm] = true
			domains = append(domains, c.Realm)
		}
		last = c.Realm
	}
	lens := make([]*goredis.IntCmd, len(domains))
	_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, d := range domains {
			lens[i] = p.HLen(ctx, aliasKey(d))
		}
		return nil
	})
	if err != nil {
		return redisErr("import", err)
	}
	aliased := map[string]bool{}
	for i, d := range domains {
		if lens[i].Val() > 0 {
			aliased[d] = true
		}
	}
	if len(aliased) == 0 {
		return nil
	}
	users := map[string][]string{}
	for len(creds) > 0 {
		batch := creds[:min(importBatch, len(creds))]
		creds = creds[len(batch):]
		clear(users)
		for _, c := range batch {
			if aliased[c.Realm] {
				users[c.Realm] = append(users[c.Realm], c.User)
			}
		}
		type lookup struct {
			domain string
			users  []string
			cmd    *goredis.SliceCmd
		}
		var lookups []lookup
		_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for d, u := range users {
				lookups = append(lookups, lookup{d, u, p.HMGet(ctx, aliasKey(d), u...)})
			}
			return nil
		})
		if err != nil {
			return redisErr("import", err)
		}
		for _, l := range lookups {
			for i, v := range l.cmd.Val() {
				if target, ok := v.(string); ok {
					return errIsAlias(l.users[i], l.domain, target)
				}
			}
		}
	}
	return nil
}

// Del removes aor and its aliases, or returns ErrUnknownUser. The
// aliases are read (HGETALL), then those of aor deleted (HDEL): an alias
// added for aor meanwhile outlives it (see RedisStore), and one pointed
// from aor at another user meanwhile goes too.
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
	// Its aliases, even when the user was gone already: aliases that
	// outlived it in a race go with it.
	all, err := s.c.HGetAll(ctx, aliasKey(domain)).Result()
	if err != nil {
		return redisErr("del", err)
	}
	var aliases []string
	for alias, target := range all {
		if target == user {
			aliases = append(aliases, alias)
		}
	}
	if len(aliases) > 0 {
		if err := s.c.HDel(ctx, aliasKey(domain), aliases...).Err(); err != nil {
			return redisErr("del", err)
		}
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

// Alias returns the user part of the AOR that user@domain is an alias
// of, or ErrUnknownUser: one HGET.
func (s *RedisStore) Alias(ctx context.Context, user, domain string) (string, error) {
	target, err := s.c.HGet(ctx, aliasKey(strings.ToLower(domain)), user).Result()
	if errors.Is(err, goredis.Nil) {
		return "", ErrUnknownUser
	}
	if err != nil {
		return "", redisErr("alias", err)
	}
	return target, nil
}

// AddAlias makes alias (e.g. 1001@a.example) stand for the user aor of
// the same domain. An alias that stands for another user is pointed at
// aor instead, as Add replaces a password. An alias in another domain
// than aor, an alias that is a user, or an aor that is not a user is an
// error wrapping ErrAliasConflict (checked before the write, not
// atomically with it: see RedisStore).
func (s *RedisStore) AddAlias(ctx context.Context, alias, aor string) error {
	user, target, domain, err := parseAlias(alias, aor)
	if err != nil {
		return err
	}
	var isUser, isTarget *goredis.IntCmd
	_, err = s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		isUser = p.Exists(ctx, userKey(user+"@"+domain))
		isTarget = p.Exists(ctx, userKey(target+"@"+domain))
		return nil
	})
	if err != nil {
		return redisErr("add alias", err)
	}
	if isUser.Val() > 0 {
		return errIsUser(user, domain)
	}
	if isTarget.Val() == 0 {
		return errNotUser(target, domain)
	}
	// The domain is listed already (its user is); once more in case.
	_, err = s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.HSet(ctx, aliasKey(domain), user, target)
		p.SAdd(ctx, domainsKey, domain)
		return nil
	})
	if err != nil {
		return redisErr("add alias", err)
	}
	return nil
}

// DelAlias removes alias, or returns an error wrapping ErrUnknownUser
// when it is not an alias.
func (s *RedisStore) DelAlias(ctx context.Context, alias string) error {
	user, domain, err := ParseAOR(alias)
	if err != nil {
		return err
	}
	n, err := s.c.HDel(ctx, aliasKey(domain), user).Result()
	if err != nil {
		return redisErr("del alias", err)
	}
	if n == 0 {
		return errNoAlias(user, domain)
	}
	return nil
}

// ListAliases returns the aliases of domain, or of every domain when
// domain is empty, sorted by alias.
func (s *RedisStore) ListAliases(ctx context.Context, domain string) ([]Alias, error) {
	domains := []string{strings.ToLower(domain)}
	if domain == "" {
		var err error
		if domains, err = s.c.SMembers(ctx, domainsKey).Result(); err != nil {
			return nil, redisErr("list aliases", err)
		}
	}
	cmds := make([]*goredis.MapStringStringCmd, len(domains))
	_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, d := range domains {
			cmds[i] = p.HGetAll(ctx, aliasKey(d))
		}
		return nil
	})
	if err != nil {
		return nil, redisErr("list aliases", err)
	}
	var aliases []Alias
	for i, d := range domains {
		for user, target := range cmds[i].Val() {
			aliases = append(aliases, Alias{user + "@" + d, target + "@" + d})
		}
	}
	sortAliases(aliases)
	return aliases, nil
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
