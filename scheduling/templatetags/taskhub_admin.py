"""Template filters for TaskHub's admin pages."""

from __future__ import annotations

from django import template

from scheduling.admin.lists import humanise_duration

register = template.Library()


@register.filter(name="duration")
def duration(seconds: float | None) -> str:
    """Render seconds as '28 ms' or '1 min 5 s'."""
    return humanise_duration(seconds)
