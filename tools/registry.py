"""Tool names as the YAML spells them, mapped to their classes."""

from tools.base import GovernedTool
from tools.customer_history import CustomerHistoryTool
from tools.kb_search import KBSearchTool
from tools.store_tools import STORE_TOOLS

REGISTRY: dict[str, type[GovernedTool]] = {
    CustomerHistoryTool.model_fields["name"].default: CustomerHistoryTool,
    KBSearchTool.model_fields["name"].default: KBSearchTool,
    **STORE_TOOLS,
}
