# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sizes in bytes, as operators write them. PRIVATE to the collection: no compatibility promise.

Plain Python with no Ansible import: the memory guard daemon uses it on hosts without Ansible.
Units are binary, as Docker, fallocate and the kernel count them: K = KB = KiB = 1024,
M = 1024 K, G = 1024 M, T = 1024 G. A bare number (int or digit string) is bytes.
"""

import math
import re

_SIZE_RE = re.compile(r'^\s*([0-9]*)(?:\.([0-9]+))?\s*(?:([kmgtp])(ib|b)?|(b?))\s*$', re.IGNORECASE)
_FACTORS = {'': 1, 'k': 1024, 'm': 1024 ** 2, 'g': 1024 ** 3, 't': 1024 ** 4, 'p': 1024 ** 5}


class SizeError(ValueError):
    """A size that cannot be understood; the message names the value."""


def parse_size(value, name='size'):
    """Return `value` ("8G", "512M", "1.5GiB", "768m", 1048576) as a whole number of bytes.

    Raises SizeError naming `name` and the value for anything else (negative, empty,
    unknown unit, fraction of a byte, booleans). Digit strings are read exactly (integer
    arithmetic, no float rounding).
    """
    if isinstance(value, bool) or value is None:
        raise SizeError('%s: %r is not a size; use bytes or a number with a unit such as 512M or 8G' % (name, value))
    if isinstance(value, int):
        if value < 0:
            raise SizeError('%s: %r is negative' % (name, value))
        return value
    if isinstance(value, float):
        if value < 0 or not math.isfinite(value) or value != int(value):
            raise SizeError('%s: %r is not a whole number of bytes' % (name, value))
        return int(value)
    text = str(value)
    match = _SIZE_RE.match(text)
    if not match or not (match.group(1) or match.group(2)):
        raise SizeError('%s: %r is not a size; use bytes or a number with a unit such as 512M, 1.5GiB or 8G' % (name, text))
    whole, fraction, unit = match.group(1) or '0', match.group(2) or '', (match.group(3) or '').lower()
    factor = _FACTORS[unit]
    numerator = int(whole + fraction) * factor
    denominator = 10 ** len(fraction)
    if numerator % denominator:
        raise SizeError('%s: %r is not a whole number of bytes' % (name, text))
    return numerator // denominator


def format_size(num_bytes):
    """A short human form of a byte count: 512M, 1.5G, 8G, 4096 (bytes below 1 KiB); never "1024" of a unit."""
    num_bytes = int(num_bytes)
    units = (('P', 1024 ** 5), ('T', 1024 ** 4), ('G', 1024 ** 3), ('M', 1024 ** 2), ('K', 1024))
    for index, (unit, factor) in enumerate(units):
        if abs(num_bytes) >= factor:
            text = ('%.2f' % (num_bytes / factor)).rstrip('0').rstrip('.')
            if abs(float(text)) >= 1024 and index > 0:
                # rounding reached the next unit up (1 GiB - 1 byte): say it in that unit
                unit, factor = units[index - 1]
                text = ('%.2f' % (num_bytes / factor)).rstrip('0').rstrip('.')
            return text + unit
    return str(num_bytes)
