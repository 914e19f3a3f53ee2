"""The gateway's logging and PII masking: one implementation (``common``) for the gateway and
the core, so a log line is masked by the same rules whichever process wrote it."""

from common.logs import JsonFormatter, PiiFilter, setup_logging  # noqa: F401 - re-exported
from common.pii import mask_account, mask_address, mask_phone, mask_text  # noqa: F401 - re-exported
