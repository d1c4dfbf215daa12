#ifndef EB_CMD_STATUS_H
#define EB_CMD_STATUS_H

/**
 * @brief `evbridge status [URL]`: print a running evbridge's /status for
 * a person. @p base is the listener's URL (http://127.0.0.1:8080) or the
 * /status URL itself.
 * @returns 0 (ready), 3 (running, not ready), 1 (no answer).
 */
int eb_status_main(const char *base);

#endif /* EB_CMD_STATUS_H */
