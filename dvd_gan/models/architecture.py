"""Channel-multiplier tables by output resolution (docs/design.md, section 1).

The 64/128/256 rows are the paper's (uncertain beyond 64). The 16 and 32 rows are not from
the paper: they keep the same shape for small CPU runs.
"""

# Generator: group input -> output widths (x ch); one group per doubling from 4x4.
GENERATOR_MULTIPLIERS = {
    16: (8, 4, 2),
    32: (8, 8, 4, 2),
    64: (8, 8, 8, 4, 2),
    128: (8, 8, 8, 4, 2, 1),
    256: (8, 8, 8, 4, 2, 1, 1),
}

# Discriminator block output widths (x d_ch); every block but the last halves H and W.
DISCRIMINATOR_MULTIPLIERS = {
    16: (2, 4, 8),
    32: (2, 4, 8, 16),
    64: (2, 4, 8, 16, 16),
    128: (1, 2, 4, 8, 16, 16),
    256: (1, 2, 4, 8, 8, 16, 16),
}


def _lookup(table: dict, resolution: int, field: str) -> tuple[int, ...]:
    if resolution not in table:
        raise ValueError(
            f"No default {field} for resolution {resolution}; the table has "
            f"{sorted(table)}. Set config.model.{field} explicitly."
        )
    return table[resolution]


def generator_multipliers(resolution: int, override=None) -> tuple[int, ...]:
    multipliers = tuple(
        override or _lookup(GENERATOR_MULTIPLIERS, resolution, "g_channel_multipliers")
    )
    expected = 4 * 2 ** (len(multipliers) - 1)
    if expected != resolution:
        raise ValueError(
            f"g_channel_multipliers {multipliers} make {len(multipliers) - 1} upsampling groups "
            f"from 4x4, i.e. {expected}x{expected}, but the resolution is {resolution}. "
            f"Use {int.bit_length(resolution // 4)} multipliers."
        )
    return multipliers


def discriminator_multipliers(resolution: int, override=None, field="d_channel_multipliers"):
    return tuple(override or _lookup(DISCRIMINATOR_MULTIPLIERS, resolution, field))
