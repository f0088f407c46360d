# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stack's compose document: catalogue + profile + tier plan + host -> Compose (or Swarm) services.

PRIVATE to the collection: no compatibility promise. Plain Python with no Ansible import; the filter
plugin sutazai.ops.stack_compose is a thin wrapper of `render`, and the stack role renders its compose
file from what `render` returns.

What goes in:
- the catalogue: `services` (the platform: postgres, redis, qdrant, ollama, backend, frontend) and
  `agents` (tier 2/3 agent containers), each a dictionary with `name`, `tier` and optionally `image`
  (a key of the image set or a full reference), `port`, `publish`, `environment`, `command`,
  `volumes`, `healthcheck`, `health_path`, `replicas`, `profiles`, `depends_on`, `env_files`, `kind`,
  `local` (what changes with the local image set) and the per-service keys of the tier plan;
- the profile: `stable` (tiers 1 and 2 and the enabled agents), `dev` (the same services, every port
  published on loopback) or `emergency` (tier 1 only);
- the host's MemTotal and CPUs and the tier plan (module_utils/_tiers.py) -> each service's limits.

What comes out: the compose document (limits and reservations, oom_score_adj by tier, the labels
sutazai.tier and sutazai.service, cgroup_parent = the stack cgroup, json-file log rotation, ports on
127.0.0.1 unless exposed, the restart policy, settings that take effect: postgres `-c` flags, redis
`--maxmemory`, real OLLAMA_* variables), the settings to verify after deploy, the container_limits
list, the HTTP health URLs, the services the profile leaves out, and the stack budget.
"""

import copy
import re
from fractions import Fraction

from ansible_collections.sutazai.ops.plugins.module_utils._containers import SERVICE_LABEL, TIER_LABEL
from ansible_collections.sutazai.ops.plugins.module_utils._tiers import TierPlanError, plan_limits
from ansible_collections.sutazai.ops.plugins.module_utils._units import SizeError, format_size, parse_size

PROFILES = ('stable', 'dev', 'emergency')
# which tiers each profile runs (a service's own `profiles` key overrides this)
PROFILE_TIERS = {'stable': (1, 2, 3), 'dev': (1, 2, 3), 'emergency': (1,)}
ENGINES = ('compose', 'swarm')

# Ollama's server environment variables (envconfig/config.go, see OLLAMA_API.md).
OLLAMA_VARIABLES = (
    'OLLAMA_HOST', 'OLLAMA_KEEP_ALIVE', 'OLLAMA_NUM_PARALLEL', 'OLLAMA_MAX_LOADED_MODELS', 'OLLAMA_MAX_QUEUE',
    'OLLAMA_FLASH_ATTENTION', 'OLLAMA_KV_CACHE_TYPE', 'OLLAMA_CONTEXT_LENGTH', 'OLLAMA_LOAD_TIMEOUT', 'OLLAMA_MODELS',
    'OLLAMA_ORIGINS', 'OLLAMA_NOPRUNE', 'OLLAMA_SCHED_SPREAD', 'OLLAMA_GPU_OVERHEAD', 'OLLAMA_MAX_TRANSFER_STREAMS',
    'OLLAMA_DEBUG', 'OLLAMA_NOHISTORY', 'OLLAMA_NO_CLOUD',
)
# what the seeds set that Ollama never had, and what to use instead
OLLAMA_NEVER_EXISTED = {
    'OLLAMA_MAX_MEMORY': 'the service memory limit (tier plan) - Ollama has no memory cap of its own',
    'OLLAMA_CPU_THREADS': 'the num_thread model parameter (stack_models variants) and the cpus limit',
    'OLLAMA_NUM_THREADS': 'the num_thread model parameter (stack_models variants) and the cpus limit',
    'OLLAMA_QUEUE_SIZE': 'OLLAMA_MAX_QUEUE',
}
OLLAMA_PRESETS = {
    # seed 000: one model, short keep-alive
    'stable': {'OLLAMA_MAX_LOADED_MODELS': '1', 'OLLAMA_KEEP_ALIVE': '1m', 'OLLAMA_NUM_PARALLEL': '1',
               'OLLAMA_MAX_QUEUE': '64'},
    # seed 003's high-concurrency settings, with its OLLAMA_QUEUE_SIZE as the real OLLAMA_MAX_QUEUE
    'high_concurrency': {'OLLAMA_MAX_LOADED_MODELS': '3', 'OLLAMA_KEEP_ALIVE': '10m', 'OLLAMA_NUM_PARALLEL': '50',
                         'OLLAMA_MAX_QUEUE': '500', 'OLLAMA_FLASH_ATTENTION': '1'},
}
# variables the official postgres / redis images ignore (seed 002), and the setting that takes effect
IGNORED_VARIABLES = {
    'POSTGRES_SHARED_BUFFERS': 'stack_postgres_settings.shared_buffers (rendered as -c shared_buffers=; default 25% of the postgres limit)',
    'POSTGRES_EFFECTIVE_CACHE_SIZE': 'stack_postgres_settings.effective_cache_size (rendered as -c effective_cache_size=)',
    'POSTGRES_WORK_MEM': 'stack_postgres_settings.work_mem (rendered as -c work_mem=)',
    'POSTGRES_MAX_CONNECTIONS': 'stack_postgres_settings.max_connections (rendered as -c max_connections=)',
    'REDIS_MAXMEMORY': 'stack_redis_maxmemory_fraction (rendered as --maxmemory, a fraction of the redis limit)',
    'REDIS_MAXMEMORY_POLICY': 'stack_redis_settings.maxmemory-policy (rendered as --maxmemory-policy; default allkeys-lru)',
}
# what `docker stack deploy` does not honour, and what takes its place
SWARM_IGNORED = {
    'cgroup_parent': 'the stack cgroup is not used: Swarm tasks run under the engine cgroup; cap the host with the tier plan',
    'oom_score_adj': 'not settable on Swarm services: the kernel backstop by tier is lost; the memory guard still acts by tier',
    'container_name': 'tasks are named <stack>_<service>.<slot>.<id>; find them by the sutazai.service label',
    'restart': 'replaced by deploy.restart_policy (on-failure, 3 attempts per hour)',
    'depends_on': 'ignored: services start in any order and rely on their health checks and retries',
    'cpuset': 'not settable on Swarm services',
    '.env': 'not read by docker stack deploy: the role renders every value into the file',
}

# redis-server with requirepass read from its standard input (`redis-server -`): the official image's
# entrypoint (which drops to the redis user) when there is one, redis-server itself otherwise
REDIS_PASSWORD_ENTRYPOINT = (
    'if command -v docker-entrypoint.sh >/dev/null; then set -- docker-entrypoint.sh redis-server - "$$@"; '
    'else set -- redis-server - "$$@"; fi\n'
    'exec "$$@" <<EOF\nrequirepass $${REDIS_PASSWORD:?redis.env has no REDIS_PASSWORD}\nEOF\n')

SERVICE_KEYS = ('name', 'tier', 'image', 'port', 'publish', 'environment', 'command', 'entrypoint', 'volumes',
                'healthcheck', 'health_path', 'replicas', 'profiles', 'depends_on', 'env_files', 'kind', 'local',
                'enabled', 'user', 'password')
PLAN_SERVICE_KEYS = ('weight', 'memory', 'memory_min', 'memory_max', 'reservation', 'memory_reservation', 'cpus',
                     'cpus_reservation', 'cpu_group', 'oom_score_adj')
LOCAL_KEYS = ('image', 'port', 'environment', 'command', 'healthcheck', 'health_path', 'volumes')
KINDS = ('postgres', 'redis', 'ollama', 'http')
_NAME_RE = re.compile(r'^[a-z0-9][a-z0-9_.-]*$')

# keys of a rendered compose service that carry limits only (container_limits changes them in place)
LIMIT_KEYS = ('deploy', 'cpuset')

DEFAULTS = {
    'project': 'sutazai',
    'profile': 'stable',
    'engine': 'compose',
    'image_set': 'upstream',
    'images': {},
    'cgroup_parent': None,
    'expose': False,
    'port_offset': 0,
    'restart': 'unless-stopped',
    'log_max_size': '10m',
    'log_max_file': 3,
    'plan': {},
    'postgres_settings': {},
    'redis_settings': {},
    'redis_maxmemory_fraction': 0.75,
    'ollama_preset': 'stable',
    'ollama_environment': {},
    'swarm_update_monitor': '30s',
    'swarm_endpoint_mode': 'vip',
    'swarm_port_mode': 'ingress',
    'applied': None,
    'oom_score_min': -1000,
}


class StackError(ValueError):
    """A catalogue, profile or setting that cannot be rendered; the message names the value."""


# ---------------------------------------------------------------- validation

def check_environment(name, environment, server=True):
    """Refuse unknown OLLAMA_* names and the seeds' ignored POSTGRES_/REDIS_ variables, naming what to use.

    `server`: the environment is Ollama's own (every OLLAMA_* must be real); elsewhere (a client such as the
    backend has OLLAMA_BASE_URL) only the names the seeds invented for the server are refused.
    """
    errors = []
    for key in sorted(environment or {}):
        key = str(key)
        if key in IGNORED_VARIABLES:
            errors.append('%s: %s is ignored by the image; use %s' % (name, key, IGNORED_VARIABLES[key]))
        elif key.startswith('OLLAMA_') and key not in OLLAMA_VARIABLES and (server or key in OLLAMA_NEVER_EXISTED):
            hint = OLLAMA_NEVER_EXISTED.get(key)
            errors.append('%s: %s is not an Ollama variable%s; the real ones are %s' % (
                name, key, ' (use %s)' % hint if hint else '', ', '.join(OLLAMA_VARIABLES)))
    return errors


def _environment(value, name):
    if value is None:
        return {}
    if isinstance(value, list):
        result = {}
        for item in value:
            key, sep, val = str(item).partition('=')
            if not sep:
                raise StackError('%s.environment: %r is not NAME=value' % (name, item))
            result[key] = val
        return result
    if not isinstance(value, dict):
        raise StackError('%s.environment: %r is not a dictionary' % (name, value))
    return dict((str(k), '' if v is None else (str(v).lower() if isinstance(v, bool) else str(v))) for k, v in value.items())


def _bytes(value, name):
    try:
        return parse_size(value, name)
    except SizeError as exc:
        raise StackError(str(exc)) from None


def normalize_catalogue(services, agents, image_set):
    """The services and agents as one list of checked dictionaries, local overrides applied."""
    result = []
    seen = set()
    for source, entries in (('stack_services', services), ('stack_agents', agents)):
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise StackError('%s: %r is not a list of services' % (source, entries))
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise StackError('%s[%d]: %r is not a dictionary with name and tier' % (source, index, entry))
            name = entry.get('name')
            if not name or not _NAME_RE.match(str(name)):
                raise StackError('%s[%d]: name %r must be lower case letters, digits, "_", "." or "-"' % (source, index, name))
            name = str(name)
            label = '%s.%s' % (source, name)
            unknown = sorted(set(entry) - set(SERVICE_KEYS) - set(PLAN_SERVICE_KEYS))
            if unknown:
                raise StackError('%s: unknown key%s %s; known keys are %s' % (
                    label, 's' if len(unknown) > 1 else '', ', '.join(unknown), ', '.join(SERVICE_KEYS + PLAN_SERVICE_KEYS)))
            if name in seen:
                raise StackError('%s: the service is listed twice' % label)
            seen.add(name)
            if not entry.get('enabled', True):
                continue
            service = copy.deepcopy(entry)
            tier = service.get('tier')
            if tier is None and source == 'stack_agents':
                tier = 3
            if str(tier) not in ('1', '2', '3'):
                raise StackError('%s.tier: %r is not a tier; use 1, 2 or 3' % (label, tier))
            service['tier'] = int(str(tier))
            if source == 'stack_agents' and service['tier'] == 1:
                raise StackError('%s.tier: agents are tier 2 or 3; tier 1 is the critical infrastructure' % label)
            local = service.pop('local', None) or {}
            if not isinstance(local, dict):
                raise StackError('%s.local: %r is not a dictionary' % (label, local))
            bad = sorted(set(local) - set(LOCAL_KEYS))
            if bad:
                raise StackError('%s.local: unknown key%s %s; known keys are %s' % (
                    label, 's' if len(bad) > 1 else '', ', '.join(bad), ', '.join(LOCAL_KEYS)))
            service['environment'] = _environment(service.get('environment'), label)
            if image_set == 'local':
                for key, value in local.items():
                    if key == 'environment':
                        service['environment'].update(_environment(value, label + '.local'))
                    else:
                        service[key] = copy.deepcopy(value)
            kind = service.get('kind') or (name if name in ('postgres', 'redis', 'ollama') else 'http')
            if kind not in KINDS:
                raise StackError('%s.kind: %r is not one of %s' % (label, kind, ', '.join(KINDS)))
            service['kind'] = kind
            service['source'] = source
            replicas = service.get('replicas', 1)
            if isinstance(replicas, bool) or not str(replicas).isdigit() or int(replicas) < 1:
                raise StackError('%s.replicas: %r is not a whole number of 1 or more' % (label, replicas))
            service['replicas'] = int(replicas)
            for key in ('port', 'publish'):
                value = service.get(key)
                if value is not None and (isinstance(value, bool) or not str(value).isdigit() or not 0 < int(value) < 65536):
                    raise StackError('%s.%s: %r is not a port number' % (label, key, value))
            profiles = service.get('profiles')
            if profiles is not None:
                if isinstance(profiles, str) or not isinstance(profiles, list) or any(p not in PROFILES for p in profiles):
                    raise StackError('%s.profiles: %r must be a list of %s' % (label, profiles, ', '.join(PROFILES)))
            result.append(service)
    return result


def _in_profile(service, profile):
    if service.get('profiles') is not None:
        return profile in service['profiles']
    return service['tier'] in PROFILE_TIERS[profile]


def _image(service, images, image_set, label):
    ref = service.get('image') or service['name']
    chosen = (images or {}).get(image_set) or {}
    if not isinstance(chosen, dict):
        raise StackError('stack_images.%s: %r is not a dictionary of image name to reference' % (image_set, chosen))
    if ':' in ref or '/' in ref or '@' in ref:
        return ref
    if ref not in chosen:
        raise StackError('%s.image: %r is not in the %s image set (%s); give a full reference or add it to stack_images.%s' % (
            label, ref, image_set, ', '.join(sorted(chosen)) or 'empty', image_set))
    value = chosen[ref]
    if not value:
        raise StackError('%s: the %s image set has no image for %r: %s is the operator\'s own image - set stack_images.%s.%s' % (
            label, image_set, ref, ref, image_set, ref))
    return str(value)


# ---------------------------------------------------------------- settings

def _pg_size(num_bytes):
    """Bytes as a PostgreSQL size: whole MB (what SHOW prints back as MB or GB)."""
    return '%dMB' % max(1, num_bytes // (1024 ** 2))


def parse_pg_size(text):
    """'128MB', '1GB', '8kB', '16384' (8kB pages) -> bytes, as SHOW prints sizes."""
    match = re.match(r'^\s*(\d+)\s*(kB|MB|GB|TB|B)?\s*$', str(text))
    if not match:
        raise StackError('%r is not a PostgreSQL size' % (text,))
    factor = {'B': 1, 'kB': 1024, 'MB': 1024 ** 2, 'GB': 1024 ** 3, 'TB': 1024 ** 4, None: 8192}[match.group(2)]
    return int(match.group(1)) * factor


def postgres_settings(limit, overrides):
    """The server flags from the postgres memory limit: shared_buffers 25%, effective_cache_size 75%, max_connections 100."""
    settings = {
        'shared_buffers': _pg_size(limit // 4),
        'effective_cache_size': _pg_size(limit * 3 // 4),
        'max_connections': '100',
    }
    for key, value in (overrides or {}).items():
        if not re.match(r'^[a-z_.]+$', str(key)):
            raise StackError('stack_postgres_settings: %r is not a PostgreSQL setting name' % (key,))
        settings[str(key)] = str(value)
    return settings


def redis_settings(limit, fraction, overrides):
    """--maxmemory as a fraction of the redis limit (room for fragmentation and buffers), allkeys-lru."""
    try:
        fraction = Fraction(str(fraction))
    except (ValueError, ZeroDivisionError):
        raise StackError('stack_redis_maxmemory_fraction: %r is not a number' % (fraction,)) from None
    if not Fraction(1, 10) <= fraction <= Fraction(9, 10):
        raise StackError('stack_redis_maxmemory_fraction: %s must be between 0.1 and 0.9 (redis needs room above maxmemory)'
                         % (float(fraction),))
    settings = {'maxmemory': str(int(limit * fraction)), 'maxmemory-policy': 'allkeys-lru'}
    for key, value in (overrides or {}).items():
        if key == 'maxmemory':
            raise StackError('stack_redis_settings.maxmemory: set stack_redis_maxmemory_fraction instead; maxmemory follows the limit')
        settings[str(key)] = str(value)
    return settings


def ollama_environment(preset, overrides):
    if preset not in OLLAMA_PRESETS:
        raise StackError('stack_ollama_preset: %r is not one of %s' % (preset, ', '.join(sorted(OLLAMA_PRESETS))))
    env = dict(OLLAMA_PRESETS[preset])
    env.update(_environment(overrides, 'stack_ollama_environment'))
    return env


# ---------------------------------------------------------------- render

def _options(options):
    opts = copy.deepcopy(DEFAULTS)
    unknown = sorted(set(options or {}) - set(DEFAULTS) - {'services', 'agents', 'host_memory', 'host_cpus'})
    if unknown:
        raise StackError('unknown option%s %s; known options are %s' % (
            's' if len(unknown) > 1 else '', ', '.join(unknown), ', '.join(sorted(DEFAULTS))))
    for key, value in (options or {}).items():
        if key in DEFAULTS and value is not None:
            opts[key] = value
    if opts['profile'] not in PROFILES:
        raise StackError('stack_profile: %r is not one of %s' % (opts['profile'], ', '.join(PROFILES)))
    if opts['engine'] not in ENGINES:
        raise StackError('stack_engine: %r is not one of %s' % (opts['engine'], ', '.join(ENGINES)))
    if opts['image_set'] not in ('upstream', 'local'):
        raise StackError('stack_image_set: %r is not one of upstream, local' % (opts['image_set'],))
    if not _NAME_RE.match(str(opts['project'])):
        raise StackError('stack_project: %r must be lower case letters, digits, "_", "." or "-"' % (opts['project'],))
    if not re.match(r'^(no|always|unless-stopped|on-failure(:\d+)?)$', str(opts['restart'])):
        raise StackError('stack_restart_policy: %r is not a Docker restart policy' % (opts['restart'],))
    offset = opts['port_offset']
    if isinstance(offset, bool) or not str(offset).isdigit():
        raise StackError('stack_port_offset: %r is not a whole number' % (offset,))
    opts['port_offset'] = int(offset)
    return opts


def _bind_address(expose):
    if expose is True:
        return '0.0.0.0'
    if expose in (False, None, ''):
        return '127.0.0.1'
    return str(expose)


def _healthcheck(service):
    check = service.get('healthcheck')
    if check is not None:
        return copy.deepcopy(check)
    if service.get('health_path') and service.get('port'):
        url = 'http://127.0.0.1:%s%s' % (service['port'], service['health_path'])
        return {'test': ['CMD', 'curl', '-fsS', '-o', '/dev/null', url], 'interval': '10s', 'timeout': '5s',
                'retries': 3, 'start_period': '20s'}
    return None


def render(options):
    """Everything the role needs for one deploy; see the module docstring. Raises StackError / TierPlanError."""
    opts = _options(options)
    profile = opts['profile']
    catalogue = normalize_catalogue(options.get('services'), options.get('agents'), opts['image_set'])
    errors = []
    for service in catalogue:
        errors.extend(check_environment('%s.%s' % (service['source'], service['name']), service['environment'],
                                        server=service['kind'] == 'ollama'))
    errors.extend(check_environment('stack_ollama_environment', _environment(opts['ollama_environment'], 'stack_ollama_environment')))
    if errors:
        raise StackError('; '.join(errors))
    chosen = [s for s in catalogue if _in_profile(s, profile)]
    left_out = [s['name'] for s in catalogue if not _in_profile(s, profile)]
    if not chosen:
        raise StackError('stack_profile %s: no service of the catalogue is in it' % profile)

    project = str(opts['project'])
    # the plan is made for every service of the catalogue in stable, so that a smaller profile keeps the same limits
    full_input = []
    for service in catalogue:
        entry = {'name': service['name'], 'tier': service['tier'], 'replicas': service['replicas'],
                 'container': '%s-%s' % (project, service['name'])}
        for key in PLAN_SERVICE_KEYS:
            if service.get(key) is not None:
                entry[key] = service[key]
        full_input.append(entry)
    try:
        limits = plan_limits(full_input, options.get('host_memory'), options.get('host_cpus'), opts['plan'])
    except TierPlanError as exc:
        raise StackError(str(exc)) from None

    # where the engine may not lower oom_score_adj (no CAP_SYS_RESOURCE), shift every tier up together so that
    # the order stays: tier 3 is killed first, tier 1 last
    try:
        oom_min = int(opts['oom_score_min'])
    except (TypeError, ValueError):
        raise StackError('oom_score_min: %r is not a whole number' % (opts['oom_score_min'],)) from None
    lowest = min(entry['oom_score_adj'] for entry in limits['services'].values())
    oom_shift = max(0, oom_min - lowest)
    swarm = opts['engine'] == 'swarm'
    bind = _bind_address(opts['expose'])
    compose_services = {}
    settings = {}
    health = []
    containers = []
    volumes = {}
    password_files = []
    for service in chosen:
        name = service['name']
        label = '%s.%s' % (service['source'], name)
        lim = limits['services'][name]
        doc = {'image': _image(service, opts['images'], opts['image_set'], label)}
        if service.get('password') and service['kind'] != 'redis':
            raise StackError('%s.password: only a redis service takes a generated password (postgres always has one)' % label)
        if service['replicas'] == 1 and not swarm:
            doc['container_name'] = lim['container']
        env = dict(service['environment'])
        command = copy.deepcopy(service.get('command'))
        if service['kind'] == 'postgres':
            pg = postgres_settings(lim['memory'], opts['postgres_settings'])
            settings[name] = {'kind': 'postgres', 'settings': pg}
            flags = []
            for key in sorted(pg):
                flags.extend(['-c', '%s=%s' % (key, pg[key])])
            command = (command or []) + flags
        elif service['kind'] == 'redis':
            rd = redis_settings(lim['memory'], opts['redis_maxmemory_fraction'], opts['redis_settings'])
            settings[name] = {'kind': 'redis', 'settings': rd}
            flags = []
            for key in sorted(rd):
                flags.extend(['--%s' % key, rd[key]])
            command = (command or []) + flags
            if service.get('password'):
                # requirepass comes from redis.env (REDIS_PASSWORD) on redis-server's standard input, so that it
                # is neither in this file nor in the container's command; REDISCLI_AUTH (same file) lets redis-cli
                # in the container (health check, verification) authenticate
                doc['entrypoint'] = ['sh', '-c', REDIS_PASSWORD_ENTRYPOINT, 'redis']
                if 'redis' not in (service.get('env_files') or []):
                    service['env_files'] = list(service.get('env_files') or []) + ['redis']
                password_files.append('redis')
        elif service['kind'] == 'ollama':
            ollama_env = ollama_environment(opts['ollama_preset'], opts['ollama_environment'])
            port = service.get('port') or 11434
            ollama_env.setdefault('OLLAMA_HOST', '0.0.0.0:%s' % port)
            env.update(ollama_env)
            settings[name] = {'kind': 'ollama', 'settings': dict((k, env[k]) for k in sorted(env) if k.startswith('OLLAMA_'))}
        if command:
            doc['command'] = command
        if service.get('entrypoint') and not service.get('password'):
            doc['entrypoint'] = copy.deepcopy(service['entrypoint'])
        if service.get('user'):
            doc['user'] = str(service['user'])
        if env:
            doc['environment'] = dict((k, env[k]) for k in sorted(env))
        if service.get('env_files'):
            doc['env_file'] = ['%s.env' % f for f in service['env_files']]
        publish = service.get('publish')
        if publish is None and profile == 'dev' and service.get('port'):
            publish = service['port']
        host_port = None
        if publish is not None and service.get('port'):
            host_port = int(publish) + opts['port_offset']
            if host_port > 65535:
                raise StackError('%s: port %s + stack_port_offset %s is above 65535' % (label, publish, opts['port_offset']))
            if swarm:
                doc['ports'] = [{'target': int(service['port']), 'published': host_port, 'protocol': 'tcp',
                                 'mode': opts['swarm_port_mode']}]
            else:
                doc['ports'] = ['%s:%d:%d' % (bind, host_port, int(service['port']))]
        if service.get('volumes'):
            doc['volumes'] = list(service['volumes'])
            for volume in service['volumes']:
                source = str(volume).split(':', 1)[0]
                if source and not source.startswith(('/', '.', '~', '$')):
                    volumes[source] = {}
        check = _healthcheck(service)
        if check:
            doc['healthcheck'] = check
        if service.get('health_path') and host_port is not None:
            host = '127.0.0.1' if bind in ('0.0.0.0', '::') else bind
            health.append({'service': name, 'url': 'http://%s:%d%s' % (host, host_port, service['health_path'])})
        doc['labels'] = {TIER_LABEL: str(service['tier']), SERVICE_LABEL: name}
        doc['logging'] = {'driver': 'json-file', 'options': {'max-size': str(opts['log_max_size']), 'max-file': str(opts['log_max_file'])}}
        resources = {'limits': {'memory': str(lim['memory']), 'cpus': '%g' % lim['cpus']}}
        reservations = {}
        if lim['memory_reservation']:
            reservations['memory'] = str(lim['memory_reservation'])
        if lim['cpus_reservation']:
            reservations['cpus'] = '%g' % lim['cpus_reservation']
        if reservations:
            resources['reservations'] = reservations
        doc['deploy'] = {'resources': resources}
        if swarm:
            doc['deploy'].update(_swarm_deploy(service, opts))
        else:
            doc['restart'] = str(opts['restart'])
            doc['oom_score_adj'] = min(1000, lim['oom_score_adj'] + oom_shift)
            if opts['cgroup_parent']:
                doc['cgroup_parent'] = str(opts['cgroup_parent'])
            if lim['cpuset_cpus']:
                doc['cpuset'] = lim['cpuset_cpus']
            if service['replicas'] > 1:
                doc['deploy']['replicas'] = service['replicas']
            depends = [d for d in (service.get('depends_on') or []) if d in [c['name'] for c in chosen]]
            if depends:
                doc['depends_on'] = dict((d, {'condition': 'service_started'}) for d in depends)
        compose_services[name] = doc
        if service['replicas'] == 1:
            entry = {'name': lim['container'], 'memory': lim['memory'], 'cpus': lim['cpus']}
            if lim['memory_reservation']:
                entry['memory_reservation'] = lim['memory_reservation']
            if lim['cpuset_cpus']:
                entry['cpuset_cpus'] = lim['cpuset_cpus']
            containers.append(entry)
    document = {'name': project, 'services': compose_services}
    if volumes:
        document['volumes'] = volumes
    warnings = []
    if swarm:
        document.pop('name')
        warnings.append('Swarm does not honour %s: %s' % (
            ', '.join(sorted(SWARM_IGNORED)), '; '.join('%s - %s' % (k, v) for k, v in sorted(SWARM_IGNORED.items()))))
    budget = limits['budget']
    return {
        'compose': document,
        'services': [s['name'] for s in chosen],
        'left_out': left_out,
        'tiers': dict((s['name'], s['tier']) for s in chosen),
        'containers': containers,
        'limits': dict((s['name'], limits['services'][s['name']]) for s in chosen),
        'settings': settings,
        'health': health,
        'stack_budget': budget['usable'],
        'stack_budget_text': format_size(budget['usable']),
        'budget': budget,
        'oom_score_shift': 0 if swarm else oom_shift,
        'limits_only': limits_only_change(opts['applied'], document),
        'warnings': warnings,
        'password_files': sorted(set(password_files)),
    }


def _swarm_deploy(service, opts):
    host_ports = service.get('publish') is not None and opts['swarm_port_mode'] == 'host'
    return {
        'replicas': service['replicas'],
        'endpoint_mode': opts['swarm_endpoint_mode'],
        'labels': {TIER_LABEL: str(service['tier']), SERVICE_LABEL: service['name']},
        'restart_policy': {'condition': 'on-failure', 'max_attempts': 3, 'window': '1h'},
        # a host-mode port cannot be bound twice on one node: such a service must stop the old task first
        'update_config': {'parallelism': 1, 'order': 'stop-first' if host_ports else 'start-first',
                          'failure_action': 'rollback', 'monitor': str(opts['swarm_update_monitor'])},
        'rollback_config': {'parallelism': 1, 'order': 'stop-first' if host_ports else 'start-first',
                            'monitor': str(opts['swarm_update_monitor'])},
    }


def strip_limits(document):
    """The compose document without what container_limits can change in place (deploy.resources, cpuset)."""
    doc = copy.deepcopy(document or {})
    for service in (doc.get('services') or {}).values():
        deploy = service.get('deploy')
        if isinstance(deploy, dict):
            deploy.pop('resources', None)
            if not deploy:
                service.pop('deploy')
        service.pop('cpuset', None)
    return doc


def limits_only_change(old, new):
    """True when `new` differs from `old` (what the containers were created from) in limits at most.

    Then nothing needs recreating: container_limits puts the limits in force in place (and changes nothing
    when they already are), and Compose runs with recreate never, since its config hash would otherwise
    recreate every container whose limits changed.
    """
    if not old:
        return False
    return strip_limits(old) == strip_limits(new)
