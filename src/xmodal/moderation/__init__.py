"""Content moderation: category files, open_nsfw, zero-shot verdicts and their evaluation."""

from xmodal.moderation.moderator import Moderator, Verdict
from xmodal.moderation.policy import Category, Policy, load_policy, parse_policy

__all__ = ["Category", "Moderator", "Policy", "Verdict", "load_policy", "parse_policy"]
