//! The Lua scripts of the shared memory: each decision (claim, land, renew, mark) one atomic
//! script, values `{until_ms}|{rest}` ended on the caller's clock. Each fact a script keeps
//! (a sign-out, a provider end, a result and the session's newest generation) is told on the
//! facts channel too, as `{key length}:{key}{value}`, for every instance's replica
//! ([`super::reseed`]).

use redis::Script;

// Lua helpers shared by the scripts: a value's logical end, and whether it is alive.
const LUA_ALIVE: &str = r"
local function alive(v, now)
  if not v then return nil end
  local u = tonumber(string.match(v, '^(%d+)|'))
  if u and u > now then return v end
  return nil
end
local function tell(channel, key, value)
  redis.call('PUBLISH', channel, string.len(key) .. ':' .. key .. value)
end
";

/// KEYS: ended, lease, result, this instance's marker. ARGV: now, this instance's lease
/// prefix, lease_ms, generation, the new flight's lease value, whether the marker was seen
/// (1). A lease of this instance that no flight here holds any more (abandoned, its release not
/// done yet) is taken over, never joined. A marker seen and now gone: Redis lost its data
/// (`emptied`), and nothing here can be decided.
const CLAIM: &str = r"
local now = tonumber(ARGV[1])
if ARGV[6] == '1' and redis.call('EXISTS', KEYS[4]) == 0 then return {'emptied'} end
if alive(redis.call('GET', KEYS[1]), now) then return {'signed_out'} end
local holder = redis.call('GET', KEYS[2])
if holder and string.sub(holder, 1, #ARGV[2]) ~= ARGV[2] then return {'join'} end
local r = alive(redis.call('GET', KEYS[3]), now)
if r then
  if string.match(r, '^%d+|X|') then return {'result', r} end
  local gen = tonumber(string.match(r, '^%d+|R|(%d+)|'))
  if gen and gen > tonumber(ARGV[4]) then return {'result', r} end
end
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[3])
return {'fly'}
";

/// KEYS: lease, ended, newest, result, channel, carry, facts. ARGV: now, owner, kind (R, X, U), cookie
/// generation, keep_ms, gc_ms, payload (sealed tokens or refusal code), the consumed token's
/// hash (hex).
///
/// Landing twice for one cookie generation keeps the first result (`exists` hands it back): a
/// landing sent again after Redis did not answer, or a second flight for the same token, never
/// numbers a second generation, and a later refusal never replaces an earlier good result. A
/// token kept by the upstream lands again at the next expiry (its cookie is one generation on
/// by then). A new generation is `carry`: uncarried until a request arrives with it (CARRIED).
const LAND: &str = r"
local now = tonumber(ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[2] then redis.call('DEL', KEYS[1]) end
local kind = ARGV[3]
local reply
local landed = alive(redis.call('GET', KEYS[4]), now)
local landed_gen = landed and tonumber(string.match(landed, '^%d+|R|(%d+)|'))
if kind == 'R' and alive(redis.call('GET', KEYS[2]), now) then
  reply = {'signed_out'}
elseif (kind == 'R' or kind == 'X') and landed_gen and landed_gen > tonumber(ARGV[4]) then
  reply = {'exists', landed}
elseif kind == 'R' then
  local newest = 0
  local n = alive(redis.call('GET', KEYS[3]), now)
  if n then newest = tonumber(string.match(n, '|(%d+)$')) end
  local gen = math.max(tonumber(ARGV[4]), newest) + 1
  local untilms = now + tonumber(ARGV[5])
  local result = untilms .. '|R|' .. gen .. '|' .. ARGV[7]
  redis.call('SET', KEYS[3], untilms .. '|' .. gen, 'PX', ARGV[6])
  redis.call('SET', KEYS[4], result, 'PX', ARGV[6])
  redis.call('SET', KEYS[6], untilms .. '|' .. gen .. '|' .. ARGV[8], 'PX', ARGV[6])
  tell(KEYS[7], KEYS[4], result)
  tell(KEYS[7], KEYS[3], untilms .. '|' .. gen)
  reply = {'refreshed', tostring(gen)}
elseif kind == 'X' then
  local refusal = (now + tonumber(ARGV[5])) .. '|X|' .. ARGV[7]
  redis.call('SET', KEYS[4], refusal, 'PX', ARGV[6])
  tell(KEYS[7], KEYS[4], refusal)
  reply = {'refused'}
else
  reply = {'unavailable'}
end
redis.call('PUBLISH', KEYS[5], kind)
return reply
";

/// KEYS: lease, result. ARGV: owner, lease_ms, now, the flight's cookie generation. Renews our
/// lease (1); takes it again when it ended while Redis could not be reached — paused longer
/// than the lease — and neither another flight took it nor a result for this cookie landed
/// meanwhile (2); a result for this cookie landed (3: the flight is over); another flight holds
/// it (0).
const RENEW: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if holder then return 0 end
local r = alive(redis.call('GET', KEYS[2]), tonumber(ARGV[3]))
if r then
  if string.match(r, '^%d+|X|') then return 3 end
  local gen = tonumber(string.match(r, '^%d+|R|(%d+)|'))
  if gen and gen > tonumber(ARGV[4]) then return 3 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
";

/// KEYS: lease, channel. ARGV: owner. Gives up our lease and wakes the waiters.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', KEYS[2], 'U')
return 1
";

/// KEYS: key. ARGV: now, until. A value's end brought forward to `until` (never later).
const SHORTEN: &str = r"
local now = tonumber(ARGV[1])
local v = alive(redis.call('GET', KEYS[1]), now)
if not v then return 0 end
local u = tonumber(string.match(v, '^(%d+)|'))
local target = tonumber(ARGV[2])
if target < u then
  redis.call('SET', KEYS[1], target .. string.match(v, '^%d+(|.*)$'), 'KEEPTTL')
end
return 1
";

/// KEYS: carry. ARGV: now, the carried generation, grace_ms, the result keys' prefix. When the
/// session's uncarried generation is that one, its result is kept only the grace from now and
/// the generation is carried (the mark deleted); else nothing.
const CARRIED: &str = r"
local now = tonumber(ARGV[1])
local v = alive(redis.call('GET', KEYS[1]), now)
if not v then return 0 end
local gen, hash = string.match(v, '^%d+|(%d+)|(%x+)$')
if gen ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
local result = ARGV[4] .. hash
local r = alive(redis.call('GET', result), now)
if not r then return 1 end
local target = now + tonumber(ARGV[3])
if target < tonumber(string.match(r, '^(%d+)|')) then
  redis.call('SET', result, target .. string.match(r, '^%d+(|.*)$'), 'KEEPTTL')
end
return 1
";

/// KEYS: key, facts. ARGV: now, until, gc_ms, rest. Sets `{until}|{rest}` unless a live value
/// ends later (a mark is never shortened).
const MARK: &str = r"
local now = tonumber(ARGV[1])
local v = alive(redis.call('GET', KEYS[1]), now)
if v and tonumber(string.match(v, '^(%d+)|')) >= tonumber(ARGV[2]) then return 0 end
local mark = ARGV[2] .. '|' .. ARGV[4]
redis.call('SET', KEYS[1], mark, 'PX', ARGV[3])
tell(KEYS[2], KEYS[1], mark)
return 1
";

/// KEYS: key, facts. ARGV: now, until, gc_ms, at, every. A provider's end: the later moment, `every`
/// once set stays.
const PROVIDER_END: &str = r"
local now = tonumber(ARGV[1])
local at = tonumber(ARGV[4])
local every = ARGV[5]
local v = alive(redis.call('GET', KEYS[1]), now)
if v then
  local pat, pevery = string.match(v, '^%d+|(%d+)|(%d)$')
  if pat then at = math.max(at, tonumber(pat)) end
  if pevery == '1' then every = '1' end
end
local mark = ARGV[2] .. '|' .. at .. '|' .. every
redis.call('SET', KEYS[1], mark, 'PX', ARGV[3])
tell(KEYS[2], KEYS[1], mark)
return 1
";

/// KEYS: key. ARGV: now, until, gc_ms. 1 when the key was not alive (now it is), else 0.
const FIRST_USE: &str = r"
local now = tonumber(ARGV[1])
if alive(redis.call('GET', KEYS[1]), now) then return 0 end
redis.call('SET', KEYS[1], ARGV[2] .. '|1', 'PX', ARGV[3])
return 1
";

fn script(body: &str) -> Script {
    Script::new(&format!("{LUA_ALIVE}{body}"))
}

/// The scripts, compiled once.
pub(super) struct Scripts {
    pub(super) claim: Script,
    pub(super) land: Script,
    pub(super) renew: Script,
    pub(super) release: Script,
    pub(super) shorten: Script,
    pub(super) mark: Script,
    pub(super) provider_end: Script,
    pub(super) first_use: Script,
    pub(super) carried: Script,
}

impl Scripts {
    /// Every script (to load them at start).
    pub(super) fn all(&self) -> [&Script; 9] {
        [
            &self.claim,
            &self.land,
            &self.renew,
            &self.release,
            &self.shorten,
            &self.mark,
            &self.provider_end,
            &self.first_use,
            &self.carried,
        ]
    }
}

pub(super) fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        claim: script(CLAIM),
        land: script(LAND),
        renew: script(RENEW),
        release: script(RELEASE),
        shorten: script(SHORTEN),
        mark: script(MARK),
        provider_end: script(PROVIDER_END),
        first_use: script(FIRST_USE),
        carried: script(CARRIED),
    })
}

