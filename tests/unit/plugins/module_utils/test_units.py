"""Table tests of plugins/module_utils/_units.py (parse_size, format_size)."""

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils._units import SizeError, format_size, parse_size

K, M, G, T, P = 1024, 1024 ** 2, 1024 ** 3, 1024 ** 4, 1024 ** 5


@pytest.mark.parametrize('value, expected', [
    (0, 0),
    (1048576, M),
    (8 * G, 8 * G),
    ('0', 0),
    ('4096', 4096),
    ('100b', 100),
    ('100B', 100),
    ('1K', K),
    ('1k', K),
    ('1KB', K),
    ('1KiB', K),
    ('512M', 512 * M),
    ('768m', 768 * M),
    ('512MB', 512 * M),
    ('8G', 8 * G),
    ('8g', 8 * G),
    ('8GB', 8 * G),
    ('8GiB', 8 * G),
    ('1.5GiB', int(1.5 * G)),
    ('1.5G', int(1.5 * G)),
    ('0.5K', 512),
    ('.5K', 512),
    ('1.25M', int(1.25 * M)),
    ('2T', 2 * T),
    ('1P', P),
    (' 8 G ', 8 * G),
    ('8G\n', 8 * G),
    (1.0, 1),
    (4096.0, 4096),
])
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize('value, words', [
    (-1, ('negative',)),
    ('-1', ('-1',)),
    ('', ("''",)),
    ('   ', ('not a size',)),
    ('abc', ('abc',)),
    ('8X', ('8X',)),
    ('8Gi', ('8Gi',)),
    ('1e3', ('1e3',)),
    ('5.K', ('5.K',)),
    ('8 G B extra', ('extra',)),
    ('1.1K', ('whole number of bytes',)),
    ('0.1M', ('whole number of bytes',)),
    (0.5, ('whole number of bytes',)),
    (-4096.0, ('whole number of bytes',)),
    (float('nan'), ('nan',)),
    (float('inf'), ('inf',)),
    ('inf', ('inf',)),
    (True, ('True',)),
    (False, ('False',)),
    (None, ('None',)),
    ([1], ('[1]',)),
])
def test_parse_size_refused(value, words):
    with pytest.raises(SizeError) as info:
        parse_size(value, 'swap_size')
    message = str(info.value)
    assert message.startswith('swap_size: ')
    for word in words:
        assert word in message


def test_size_error_is_value_error():
    with pytest.raises(ValueError):
        parse_size('lots')


@pytest.mark.parametrize('value', ['100ib', '100iB'])
def test_parse_size_rejects_ib_without_unit(value):
    with pytest.raises(SizeError):
        parse_size(value)


@pytest.mark.parametrize('value, expected', [('9007199254740993', 2 ** 53 + 1), ('99999999999999999999', 99999999999999999999)])
def test_parse_size_exact_for_big_integers(value, expected):
    assert parse_size(value) == expected


def test_parse_size_refuses_hidden_fraction():
    with pytest.raises(SizeError):
        parse_size('1.0000000000000001G')


def test_parse_size_ascii_digits_only():
    with pytest.raises(SizeError):
        parse_size('\uff18G')


@pytest.mark.parametrize('num_bytes, expected', [
    (0, '0'),
    (1, '1'),
    (1023, '1023'),
    (1024, '1K'),
    (1536, '1.5K'),
    (64 * M, '64M'),
    (512 * M, '512M'),
    (int(1.5 * G), '1.5G'),
    (8 * G, '8G'),
    (int(1.25 * G), '1.25G'),
    (2 * T, '2T'),
    (-2048, '-2K'),
    ('4096', '4K'),
])
def test_format_size(num_bytes, expected):
    assert format_size(num_bytes) == expected


@pytest.mark.parametrize('text', ['1K', '64M', '512M', '1.5G', '8G', '1.25G', '2T'])
def test_format_parse_roundtrip(text):
    assert format_size(parse_size(text)) == text


def test_format_size_does_not_print_1024_of_a_unit():
    assert format_size(G - 1) != '1024M'


def test_format_size_petabytes():
    assert format_size(P) == '1P'
