<?php
// Run by php-cgi through trioweb.twcgi.PHPScript:
//   trioweb --path examples/cgi/phpsite --processor .php=trioweb.twcgi.PHPScript --index index.php
header('X-Powered-By-Example: trioweb');
$name = isset($_GET['name']) ? $_GET['name'] : 'world';
?>
<!DOCTYPE html>
<html><body>
<p>Hello, <?= htmlspecialchars($name) ?>, from PHP <?= PHP_MAJOR_VERSION ?>.</p>
<p>SCRIPT_NAME=<?= htmlspecialchars($_SERVER['SCRIPT_NAME']) ?> PATH_INFO=<?= htmlspecialchars(isset($_SERVER['PATH_INFO']) ? $_SERVER['PATH_INFO'] : '') ?></p>
</body></html>
