package auth

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/internal/redisbatch"
)

// sharedNC tracks nonce counts in Redis, so that a request replayed to
// another node of the domain is refused there too (RFC 7616 §3.4 across
// nodes). Each user has one hash, sipfed:nc:{user@realm}, with one field
// per nonce in use (its stamp and salt, 16 bytes) holding the nonce's
// stamp and the highest count seen, and a field "~" holding the floor:
// the stamp of the newest nonce forgotten early. The hash is bounded to
// maxNCPerUser nonces: beyond, expired ones go first, then the oldest,
// whose stamp becomes the floor, and a forgotten nonce issued no later
// than the floor counts as stale (its client fetches a fresh one), never
// as new. The key expires a nonce lifetime after the user's last
// authenticated request. Only a request whose digest is right gets here,
// so nobody without the password can fill a user's hash.
//
// When Redis does not answer, the node's own tracker decides (replays to
// the same node are still refused) and a warning is logged at most once
// a minute: authentication keeps working while the store is down.
type sharedNC struct {
	batch *redisbatch.Batcher
	local *ncTracker
	keep  time.Duration // nonce lifetime + clock skew
	log   *slog.Logger

	lastWarn atomic.Int64 // unix ns
}

// maxNCPerUser bounds the nonces tracked per user in Redis: a device
// registering every minute and making a call a minute uses about 10
// within the default 5-minute lifetime; a hash this size is about 3 kB.
const maxNCPerUser = 64

// ncKeyPrefix starts the name of each user's hash; the braces around the
// user make it the Cluster hash tag.
const ncKeyPrefix = "sipfed:nc:"

// ncLua records ARGV[3] as the count of nonce ARGV[1] stamped ARGV[2]
// (µs), with ARGV[4] now (µs), ARGV[5] how long a stamp stays valid (µs)
// and ARGV[6] the most nonces kept. Replies 0, or 1 when a nonce had to
// be forgotten early; errors REPLAY and STALE. Stamps stay strings in
// storage: Lua 5.1 prints large numbers in exponent form.
const ncLua = `
local k = KEYS[1]
local nonce, issued, nc = ARGV[1], ARGV[2], tonumber(ARGV[3])
local cur = redis.call('HGET', k, nonce)
if cur then
  local sp = string.find(cur, ' ', 1, true)
  if tonumber(string.sub(cur, sp + 1)) >= nc then return redis.error_reply('REPLAY') end
else
  local floor = redis.call('HGET', k, '~')
  if floor and tonumber(issued) <= tonumber(floor) then return redis.error_reply('STALE') end
end
redis.call('HSET', k, nonce, issued .. ' ' .. ARGV[3])
local forced = 0
local max = tonumber(ARGV[6])
local n = redis.call('HLEN', k) - redis.call('HEXISTS', k, '~')
if not cur and n > max then
  local now, keep = tonumber(ARGV[4]), tonumber(ARGV[5])
  local all = redis.call('HGETALL', k)
  local oldest, oldestStamp = nil, nil
  n = 0
  for i = 1, #all, 2 do
    local f = all[i]
    if f ~= '~' then
      local v = all[i + 1]
      local stamp = string.sub(v, 1, string.find(v, ' ', 1, true) - 1)
      if tonumber(stamp) < now - keep then
        redis.call('HDEL', k, f)
      else
        n = n + 1
        if oldest == nil or tonumber(stamp) < tonumber(oldestStamp) then oldest, oldestStamp = f, stamp end
      end
    end
  end
  if n > max and oldest then
    redis.call('HDEL', k, oldest)
    local floor = redis.call('HGET', k, '~')
    if not floor or tonumber(oldestStamp) > tonumber(floor) then redis.call('HSET', k, '~', oldestStamp) end
    forced = 1
  end
end
redis.call('PEXPIRE', k, math.floor(tonumber(ARGV[5]) / 1000))
return forced
`

func newSharedNC(c goredis.UniversalClient, local *ncTracker, lifetime time.Duration, log *slog.Logger) *sharedNC {
	return &sharedNC{batch: redisbatch.New(c, ncLua), local: local, keep: lifetime + maxSkew, log: log}
}

// ncKey returns the name of the hash of user in realm.
func ncKey(user, realm string) string { return ncKeyPrefix + "{" + user + "@" + realm + "}" }

// use records nc for nonce k issued at ts, for user in realm, as
// ncTracker.use does.
func (s *sharedNC) use(ctx context.Context, user, realm string, k nonceKey, ts time.Time, nc uint32, now time.Time) (forced bool, err error) {
	args := []any{string(k[:16]), strconv.FormatInt(ts.UnixMicro(), 10), nc, now.UnixMicro(), s.keep.Microseconds(), maxNCPerUser}
	reply, err := s.batch.Eval(ctx, []string{ncKey(user, realm)}, args)
	switch {
	case err == nil:
		n, _ := reply.(int64)
		return n == 1, nil
	case goredis.HasErrorPrefix(err, "REPLAY"):
		return false, fmt.Errorf("%w: nc %d (seen by a node of the domain)", ErrReplay, nc)
	case goredis.HasErrorPrefix(err, "STALE"):
		return false, fmt.Errorf("%w: nonce count no longer tracked", ErrStaleNonce)
	}
	if t := time.Now().UnixNano(); t-s.lastWarn.Load() > int64(time.Minute) {
		s.lastWarn.Store(t)
		s.log.Warn("auth: nonce counts not shared: Redis did not answer; this node checks replays alone meanwhile", "error", err)
	}
	return s.local.use(k, ts, nc, now)
}
