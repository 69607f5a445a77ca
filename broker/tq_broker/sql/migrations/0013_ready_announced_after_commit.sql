-- Submits no longer NOTIFY inside their own transaction: a NOTIFY holds the notify-queue lock
-- from commit until after the WAL flush, so submitting commits ran one at a time. The broker
-- announces ready tasks after they committed (tq_broker.ready_announcer); ReadyCheck still
-- wakes any claim an announcement missed.

DROP TRIGGER tq_tasks_notify_ready ON tq_tasks;
DROP FUNCTION tq_notify_task_ready();
