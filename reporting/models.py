"""Reports sent to Confluence, Mattermost and email, and each channel's watermark."""

from __future__ import annotations

from django.db import models
from django.utils.timezone import now


class Channel(models.TextChoices):
    CONFLUENCE = "confluence", "Confluence"
    MATTERMOST = "mattermost", "Mattermost"
    EMAIL = "email", "Email"


class ReportOutcome(models.TextChoices):
    SENT = "SENT", "Sent"
    FAILED = "FAILED", "Failed"


class ChannelState(models.Model):
    """Where a channel's reporting stands: its watermark, its last error and who is reporting now."""

    channel = models.CharField("channel", max_length=16, choices=Channel.choices, unique=True)
    watermark = models.DateTimeField(
        "reported up to",
        null=True,
        blank=True,
        help_text="End of the last successful report; attempts finished after it are reported next.",
    )
    last_run_at = models.DateTimeField("last run", null=True, blank=True)
    last_success_at = models.DateTimeField("last success", null=True, blank=True)
    failures = models.PositiveIntegerField(
        "failures in a row", default=0, help_text="Failed reports since the last success (drives the backoff)."
    )
    next_try_at = models.DateTimeField(
        "next try", null=True, blank=True, help_text="A failing channel is retried with a backoff, not every tick."
    )
    last_error = models.TextField("last error", blank=True, default="")
    lease_until = models.DateTimeField(
        "busy until",
        null=True,
        blank=True,
        help_text="Set while a report is being sent, so two runs never send the same attempts.",
    )

    class Meta:
        verbose_name = "reporting channel"
        ordering = ["channel"]

    def __str__(self) -> str:
        return self.get_channel_display()


class Report(models.Model):
    """One report: what was sent (how many attempts, which period), where, when and how it went."""

    channel = models.CharField("channel", max_length=16, choices=Channel.choices)
    destination = models.CharField(
        "destination", max_length=300, blank=True, default="", help_text="Page, chat channel or recipients."
    )
    period_start = models.DateTimeField(
        "from", null=True, blank=True, help_text="The channel's watermark before this report (empty: the beginning)."
    )
    period_end = models.DateTimeField("to", help_text="Attempts finished up to this time were considered.")
    count = models.PositiveIntegerField("attempts", default=0, help_text="Finished attempts this report carries.")
    outcome = models.CharField("outcome", max_length=8, choices=ReportOutcome.choices)
    error = models.TextField("error", blank=True, default="")
    created_at = models.DateTimeField("created", default=now)
    duration = models.FloatField("duration (s)", null=True, blank=True)
    results = models.ManyToManyField(
        "scheduling.TaskResult",
        verbose_name="attempts",
        through="ReportedResult",
        related_name="reports",
        blank=True,
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["channel", "-created_at"], name="report_channel_idx")]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} report of {self.count} attempts ({self.outcome})"


class ReportedResult(models.Model):
    """An attempt a channel has successfully reported; the unique pair is what forbids sending it twice."""

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="items")
    result = models.ForeignKey("scheduling.TaskResult", on_delete=models.CASCADE, related_name="+")
    channel = models.CharField("channel", max_length=16, choices=Channel.choices)

    class Meta:
        verbose_name = "reported attempt"
        constraints = [
            models.UniqueConstraint(fields=["channel", "result"], name="reported_once_per_channel"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.result_id} reported to {self.channel}"
