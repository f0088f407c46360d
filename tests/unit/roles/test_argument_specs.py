"""Every role's meta/argument_specs.yml matches its defaults/main.yml: same variables, same defaults."""

import os

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
ROLES = sorted(name for name in os.listdir(os.path.join(ROOT, 'roles'))
               if os.path.isdir(os.path.join(ROOT, 'roles', name)))


def _load(role, *parts):
    with open(os.path.join(ROOT, 'roles', role, *parts), encoding='utf-8') as handle:
        return yaml.safe_load(handle) or {}


def test_there_are_roles():
    assert 'common' in ROLES and 'swap' in ROLES


@pytest.mark.parametrize('role', ROLES)
def test_defaults_and_argument_specs_agree(role):
    defaults = _load(role, 'defaults', 'main.yml')
    options = _load(role, 'meta', 'argument_specs.yml')['argument_specs']['main']['options']
    assert set(defaults) == set(options), 'in defaults only: %s; in argument_specs only: %s' % (
        sorted(set(defaults) - set(options)), sorted(set(options) - set(defaults)))
    for name, spec in options.items():
        assert 'default' in spec, '%s: argument_specs gives no default for %s' % (role, name)
        assert spec['default'] == defaults[name], '%s: %s is %r in defaults, %r in argument_specs' % (
            role, name, defaults[name], spec['default'])
        assert spec.get('description'), '%s: %s has no description' % (role, name)
        if 'choices' in spec:
            assert defaults[name] in spec['choices'], '%s: default %r of %s is not one of %s' % (
                role, defaults[name], name, spec['choices'])


@pytest.mark.parametrize('role', ROLES)
def test_role_has_a_preflight_and_a_molecule_scenario(role):
    assert os.path.exists(os.path.join(ROOT, 'roles', role, 'tasks', 'preflight.yml')), role
    converges = ''
    for scenario in os.listdir(os.path.join(ROOT, 'molecule')):
        path = os.path.join(ROOT, 'molecule', scenario, 'converge.yml')
        if os.path.exists(path):
            with open(path, encoding='utf-8') as handle:
                converges += handle.read()
    assert 'sutazai.ops.%s' % role in converges, '%s: no Molecule scenario converges it' % role
